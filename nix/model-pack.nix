# lib.mkModelPack: a model lock file (models/<short>.lock.json, schema
# version 1) -> the pack `mpk build` writes, built offline from pinned
# fixed-output fetches.
#
# Every file of the lock is a fixed-output `fetchurl` of the Hub's resolve
# URL at the locked commit, pinned by the lock's sha256 as an SRI `hash`
# (for an LFS file that is the Hub's own LFS sha256), with a valid store
# name `hf-<index>-<path>`.
#
# Gated and private models: every fetch reads the Hugging Face token from
# the builder's environment, the standard fetchurl way. `netrcImpureEnvVars
# = [ "HF_TOKEN" ]` passes the variable into the fetch (by name: the value
# is never in the .drv); `netrcPhase` writes, inside the build folder, the
# netrc file fetchurl's postHook points curl at (empty: the Hub wants a
# bearer token, not a login) and, only when HF_TOKEN is set, a header file
# `Authorization: Bearer …` that it adds to curlOpts as `--header @file`
# (curl sends a custom Authorization header to the original host only, not
# after a redirect to the CDN). Without a token nothing is sent, so public
# models are unaffected. Because netrcPhase is set, nixpkgs' fetchurl
# verifies TLS against its CA bundle (SSL_CERT_FILE) instead of the
# `/no-cert-file.crt` it uses for a plain fetch with a known hash. A failed
# fetch names HF_TOKEN in the build log (a failureHook, which stdenv runs
# when a builder fails).
#
# Impure variables come from the environment of whoever runs the builder:
# `nix build` itself on a single-user install, the nix-daemon on a
# multi-user one (as on GitHub runners set up by install-nix-action), so
# there the daemon needs HF_TOKEN in its own environment (e.g. a systemd
# drop-in `Environment=HF_TOKEN=…` for nix-daemon.service, or
# `systemctl set-environment` before restarting it), or, with Nix >= 2.19's
# experimental `configurable-impure-env`, the `impure-env = HF_TOKEN=…`
# setting (trusted users only).
# The build step has no network: the fetched files are laid out as a Hugging
# Face cache (blobs/<etag> -> the store paths) and `mpk build --lock` runs with
# HF_HUB_OFFLINE=1, so it verifies every file again (size, git blob SHA-1 or
# LFS SHA-256, sha256) and writes `<commit>.mpk`, `<commit>.info` and
# `<commit>.manifest.json`, byte-identical to `mpk build` / `mpk pack` of the
# same files. SOURCE_DATE_EPOCH (set by stdenv) is unset first.
# With `bases` (lib.mkVmImage outputs) it also writes, as `mpk build --base`
# does, `<commit>.<base>.deployment.json` for each: the model's command line
# and the launch measurements on that base image.
{ fetchurl, runCommand, mpk }:
let
  hf = import ./hf.nix;
in
{
  # The lock file (a path).
  lock,
  # Derivation name (default: `model-<org>--<name>`).
  name ? null,
  # Where the files are fetched from (the hash pins the bytes either way).
  endpoint ? "https://huggingface.co",
  # Extra arguments for every fetchurl (they override the token handling
  # above; never put a token here: it would be in the world-readable .drv).
  fetchurlArgs ? { },
  # Hashing threads inside the build (default: all cores of the builder).
  threads ? null,
  # Base images (lib.mkVmImage outputs, each with passthru.baseName).
  bases ? [ ],
  # The schema (README, "Schemas"): which mkfs.erofs the image matches.
  schema ? "modelwrap-v1",
}:
let
  l = builtins.fromJSON (builtins.readFile lock);
  parts = builtins.split "@" l.identity;
  repo = builtins.elemAt parts 0;
  commit = builtins.elemAt parts 2;
  org = builtins.head (builtins.split "/" repo);
  short = builtins.replaceStrings [ "/" ] [ "--" ] repo;
  files = builtins.genList (
    i:
    let
      f = builtins.elemAt l.files i;
      sha256 = f.lfs_sha256 or f.sha256;
      fname = hf.storeName i f.path;
      url = hf.resolveUrl { inherit endpoint repo commit; inherit (f) path; };
    in
    {
      inherit (f) path size;
      inherit sha256 url;
      name = fname;
      # The cache blob name mpk looks for: the LFS sha256, else the git oid.
      etag = f.lfs_sha256 or f.git_oid;
      # failureHook through overrideAttrs: fetchurl takes no extra
      # arguments, and its `derivationArgs` is newer than some 25.11 pins.
      src =
        (fetchurl (
          {
            name = fname;
            inherit url;
            hash = hf.sriSha256 sha256;
            netrcImpureEnvVars = [ "HF_TOKEN" ];
            inherit netrcPhase;
          }
          // fetchurlArgs
        )).overrideAttrs
          (_: {
            failureHook = failureHook repo;
          });
    }
  ) (builtins.length l.files);
  # Runs in the fetch's build folder; prints nothing (the log is public).
  netrcPhase = ''
    : > netrc
    if [ -n "''${HF_TOKEN:-}" ]; then
      ( umask 077; printf 'Authorization: Bearer %s\n' "$HF_TOKEN" > hf-authorization )
      curlOpts="$curlOpts --header @$PWD/hf-authorization"
    fi
  '';
  failureHook = repo: ''
    if [ -z "''${HF_TOKEN:-}" ]; then
      echo "mpk: fetching $urls failed and HF_TOKEN is not set: ${repo} may be gated or private; set HF_TOKEN to a Hugging Face token in the environment of the Nix builder (the nix-daemon on a multi-user install; see README)" >&2
    else
      echo "mpk: fetching $urls failed with HF_TOKEN set: check that the token can read ${repo}" >&2
    fi
  '';
  cacheRepo = "cache/models--${builtins.replaceStrings [ "/" ] [ "--" ] repo}";
  baseNames = map (b: b.baseName) bases;
  # `mpk build` names a deployment after its base image's folder, so each
  # base is a folder `bases/<name>` of links to the image's files.
  linkBases = builtins.concatStringsSep "\n" (
    map (b: ''
      mkdir -p bases/${b.baseName}
      for f in ${b}/*; do ln -s "$f" bases/${b.baseName}/; done
    '') bases
  );
in
assert l.version == 1;
assert builtins.elem schema [ "modelwrap-v1" "modelwrap-v2" ];
assert builtins.all (f: f.sha256 == (f.lfs_sha256 or f.sha256)) l.files;
runCommand (if name != null then name else "model-${short}")
  {
    nativeBuildInputs = [ mpk ];
    passthru = {
      inherit files repo commit schema;
      identity = l.identity;
      lockFile = lock;
      inherit bases;
    };
  }
  ''
    unset SOURCE_DATE_EPOCH
    mkdir -p ${cacheRepo}/blobs
    ${builtins.concatStringsSep "\n" (map (f: "ln -s ${f.src} ${cacheRepo}/blobs/${f.etag}") files)}
    export HF_HUB_CACHE="$PWD/cache" HF_HUB_OFFLINE=1 HOME="$PWD"
    unset HF_HOME HF_TOKEN HF_ENDPOINT
    ${linkBases}
    mpk build ${repo} --lock ${lock} -o built --quiet --schema ${schema} ${if threads != null then "--threads ${toString threads}" else ""} \
      ${builtins.concatStringsSep " " (map (n: "--base bases/${n}") baseNames)}
    mkdir -p $out
    for ext in mpk info manifest.json ${builtins.concatStringsSep " " (map (n: "${n}.deployment.json") baseNames)}; do
      mv "built/${repo}/${commit}.$ext" "$out/${commit}.$ext"
    done
    rmdir "built/${repo}" "built/${org}" built
  ''
