# fetchurl with nixpkgs' interface and rules, written from
# pkgs/build-support/fetchurl/default.nix as stored in the team's code index
# (NixOS/nixpkgs, the lib.extendMkDerivation version of PR #455994 with the
# `derivationArgs` of PR #456751, both merged around the nixos-25.11
# branch-off; read 2026-12-03):
#   - the arguments below and no others (no `...`): anything else must go
#     through `derivationArgs` (which older pins lack) or overrideAttrs;
#   - exactly one of hash / outputHash / sha1 / sha256 / sha512; an SRI
#     `hash` becomes outputHash with no outputHashAlgo;
#   - `url` is not in the derivation (passthru.url; the derivation has
#     `urls`);
#   - TLS: SSL_CERT_FILE is the CA bundle when the hash is unknown or
#     `netrcPhase` is set (credentials are sent), else /no-cert-file.crt, so
#     the builder passes --insecure;
#   - impureEnvVars: the proxy variables, NIX_CURL_FLAGS, … and
#     `netrcImpureEnvVars`;
#   - netrcPhase runs in postHook, after which `--netrc-file $PWD/netrc`
#     is added to curlOpts (so the phase must write ./netrc);
#   - curlOpts is a string, word-split by the builder; curlOptsList is
#     passed quoted.
# The builder is ./fetchurl-builder.sh.
{
  lib,
  mkDerivation,
  curl,
  cacert,
}:
{
  url ? "",
  urls ? [ ],
  curlOpts ? "",
  curlOptsList ? [ ],
  name ? null,
  pname ? null,
  version ? null,
  hash ? "",
  outputHash ? "",
  outputHashAlgo ? "",
  sha1 ? "",
  sha256 ? "",
  sha512 ? "",
  recursiveHash ? false,
  netrcPhase ? null,
  netrcImpureEnvVars ? [ ],
  postFetch ? "",
  downloadToTemp ? false,
  executable ? false,
  showURLs ? false,
  meta ? { },
  passthru ? { },
  preferLocalBuild ? true,
  nativeBuildInputs ? [ ],
  derivationArgs ? { },
}:
let
  # mirror:// as nixpkgs' mirrors.nix lists it first (only `debian` here).
  mirrors.debian = "http://deb.debian.org/debian/";
  resolve =
    u:
    let
      m = builtins.match "mirror://([a-z]+)/(.+)" u;
    in
    if m == null then
      u
    else
      (mirrors.${builtins.head m} or (throw "unknown mirror:// site ${builtins.head m}"))
      + builtins.elemAt m 1;
  urls_ =
    if urls != [ ] && url == "" then
      urls
    else if urls == [ ] && url != "" then
      [ url ]
    else
      throw "fetchurl requires either `url` or `urls` to be set";
  given = builtins.filter (s: s != "") [
    hash
    outputHash
    sha1
    sha256
    sha512
  ];
  hash_ =
    if builtins.length given > 1 then
      throw "multiple hashes passed to fetchurl: ${toString urls_}"
    else if hash != "" then
      {
        outputHashAlgo = null;
        outputHash = hash;
      }
    else if outputHash != "" then
      if outputHashAlgo != "" then
        { inherit outputHashAlgo outputHash; }
      else
        throw "fetchurl was passed outputHash without outputHashAlgo: ${toString urls_}"
    else if sha512 != "" then
      {
        outputHashAlgo = "sha512";
        outputHash = sha512;
      }
    else if sha256 != "" then
      {
        outputHashAlgo = "sha256";
        outputHash = sha256;
      }
    else if sha1 != "" then
      {
        outputHashAlgo = "sha1";
        outputHash = sha1;
      }
    else
      {
        outputHashAlgo = null;
        outputHash = lib.fakeHash;
      };
  finalHash =
    if hash_.outputHashAlgo == null || lib.hasPrefix hash_.outputHashAlgo hash_.outputHash then
      hash_.outputHash
    else
      "${hash_.outputHashAlgo}:${hash_.outputHash}";
  colon = builtins.match "([^:]+)[:](.*)" finalHash;
in
mkDerivation (
  derivationArgs
  // {
    name =
      if pname != null && version != null then
        "${pname}-${version}"
      else if showURLs then
        "urls"
      else if name != null then
        name
      else
        baseNameOf (toString (builtins.head urls_));
    builder = ./fetchurl-builder.sh;
    nativeBuildInputs = [ curl ] ++ nativeBuildInputs;
    urls = map resolve urls_;
    hash = finalHash;
    outputHashAlgo = if colon != null then builtins.head colon else null;
    outputHash = if colon != null then builtins.elemAt colon 1 else finalHash;
    outputHashMode = if recursiveHash || executable then "recursive" else "flat";
    SSL_CERT_FILE =
      if hash_.outputHash == "" || hash_.outputHash == lib.fakeHash || netrcPhase != null then
        "${cacert}/etc/ssl/certs/ca-bundle.crt"
      else
        "/no-cert-file.crt";
    inherit curlOpts;
    curlOptsList = lib.escapeShellArgs curlOptsList;
    inherit
      downloadToTemp
      executable
      netrcImpureEnvVars
      netrcPhase
      postFetch
      recursiveHash
      showURLs
      preferLocalBuild
      meta
      ;
    nixpkgsVersion = "25.11-stand-in";
    # HF_ENDPOINT: the stand-in's test-only redirect (fetchurl-builder.sh).
    impureEnvVars = [
      "http_proxy"
      "https_proxy"
      "ftp_proxy"
      "all_proxy"
      "no_proxy"
      "HTTP_PROXY"
      "HTTPS_PROXY"
      "FTP_PROXY"
      "ALL_PROXY"
      "NO_PROXY"
      "NIX_CURL_FLAGS"
      "NIX_HASHED_MIRRORS"
      "NIX_CONNECT_TIMEOUT"
      "HF_ENDPOINT"
    ]
    ++ netrcImpureEnvVars;
    postHook =
      if netrcPhase == null then
        null
      else
        ''
          ${netrcPhase}
          curlOpts="$curlOpts --netrc-file $PWD/netrc"
        '';
    passthru = {
      inherit url;
      resolvedUrl = resolve url;
    }
    // passthru;
  }
)
