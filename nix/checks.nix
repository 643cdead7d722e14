# `nix flake check`: the driver builds, clippy and rustfmt are clean, the test
# suite passes with the pinned reference tools, and the pinned tools and mpk
# pack a fixture to the same bytes. Nothing here needs the network beyond the
# pinned fixed-output fetches (no Hub access: the Hub tests use the mock Hub).
{
  runCommand,
  clippy,
  rustfmt,
  xfsprogs,
  e2fsprogs,
  python3,
  mpk,
  erofs-utils,
  erofs-utils-186,
  cryptsetup,
}:
let
  lintOnly =
    pname: nativeBuildInputs: command:
    mpk.overrideAttrs (old: {
      inherit pname;
      nativeBuildInputs = old.nativeBuildInputs ++ nativeBuildInputs;
      buildPhase = ''
        runHook preBuild
        ${command}
        runHook postBuild
      '';
      installPhase = "touch $out";
      doCheck = false;
      doInstallCheck = false;
    });
in
{
  build = mpk;

  clippy = lintOnly "mpk-clippy" [ clippy ] "cargo clippy --offline --workspace --all-targets -- -D warnings";

  fmt = lintOnly "mpk-fmt" [ rustfmt ] "cargo fmt --all --check";

  tests = mpk.overrideAttrs (old: {
    pname = "mpk-tests";
    doCheck = true;
    cargoTestFlags = [ "--workspace" ];
    # Tests that need root, the network, nix or Python packages skip here
    # (MPK_REQUIRE_TOOLS is not set); .ci/run runs them all.
    nativeCheckInputs = (old.nativeCheckInputs or [ ]) ++ [
      erofs-utils
      cryptsetup
      xfsprogs
      e2fsprogs
      python3
    ];
    preCheck = ''
      unset SOURCE_DATE_EPOCH
      export HOME=$TMPDIR
    '';
  });

  # The pinned erofs-utils 1.5 + cryptsetup 2.6.1 pipeline (via
  # `mpk pack --backend tools`, which refuses any other versions) and mpk's
  # native writer pack the same fixture to the same bytes and reference;
  # and the same for modelwrap-v2 with the pinned erofs-utils 1.8.6 (found
  # through MPK_MKFS_EROFS_186: both erofs-utils install mkfs.erofs).
  reference-tools =
    runCommand "mpk-check-reference-tools"
      {
        nativeBuildInputs = [ mpk erofs-utils cryptsetup ];
      }
      ''
        unset SOURCE_DATE_EPOCH
        veritysetup --version
        m=$PWD/model
        mkdir -p "$m/1_Pooling" "$m/sub/dir" "$m/empty-dir"
        printf '{"hidden_size": 384}\n' > "$m/config.json"
        printf '{"word_embedding_dimension": 384}\n' > "$m/1_Pooling/config.json"
        : > "$m/empty.txt"
        # stdenv runs with pipefail: `yes` ends by SIGPIPE, not an error.
        { yes 'the quick brown fox' || true; } | head -c 3000001 > "$m/model.safetensors"
        seq 1 100000 > "$m/sub/dir/vocab.txt"
        printf 'x' > "$m/sub/dir/t""$(printf '\303\266')""kenizer.json"
        id=acme/fixture@0123456789abcdef0123456789abcdef01234567
        mpk pack "$m" --identity "$id" -o native.mpk
        mpk pack "$m" --identity "$id" -o tools.mpk --backend tools
        cmp native.mpk tools.mpk
        cmp native.info tools.info
        mpk verify native.mpk --ref native.info --identity "$id"
        export MPK_MKFS_EROFS_186=${erofs-utils-186}/bin/mkfs.erofs
        mpk pack "$m" --identity "$id" -o native2.mpk --schema modelwrap-v2
        mpk pack "$m" --identity "$id" -o tools2.mpk --schema modelwrap-v2 --backend tools
        cmp native2.mpk tools2.mpk
        cmp native2.info tools2.info
        mpk verify native2.mpk --ref native2.info --identity "$id"
        mkdir -p $out
        cp native.info $out/fixture.info
        cp native2.info $out/fixture-v2.info
      '';
}
