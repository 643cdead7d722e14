# The stand-in's fetchurl builder, as nixpkgs' pkgs/build-support/fetchurl/
# builder.sh does it (checked against the stored NixOS/nixpkgs copy,
# 2026-12-03): curl with --location --retry --fail; `--insecure` unless
# $SSL_CERT_FILE is a file (fetchurl sets it to /no-cert-file.crt for a
# known hash without netrcPhase, to the CA bundle otherwise); then the
# word-split $curlOpts (which fetchurl's postHook, after running
# netrcPhase, extends with `--netrc-file $PWD/netrc`), the quoted
# curlOptsList and $NIX_CURL_FLAGS; the URLs in order; postFetch; and on
# failure "cannot download" (and, through stdenv's exit handler, the
# derivation's failureHook).
#
# One test-only addition: with HF_ENDPOINT set in the environment of the
# build (an impure variable of the stand-in's fetchurl), a
# https://huggingface.co/ URL is fetched from that endpoint instead, which
# is how the tests point the fetches at the mock Hub. The hash pins the
# bytes either way.
source "$stdenv/setup"

curlVersion=$(curl -V | head -1 | cut -d' ' -f2)
curl=(
    curl
    --location
    --max-redirs 20
    --retry 3
    --disable-epsv
    --cookie-jar cookies
    --user-agent "curl/$curlVersion Nixpkgs/$nixpkgsVersion"
)
if ! [ -f "$SSL_CERT_FILE" ]; then
    curl+=(--insecure)
fi
eval "curl+=($curlOptsList)"
# shellcheck disable=SC2206 # word splitting is the documented behaviour
curl+=(
    $curlOpts
    ${NIX_CURL_FLAGS:-}
)

downloadedFile="$out"
if [ -n "$downloadToTemp" ]; then downloadedFile="$TMPDIR/file"; fi

set -o noglob
for url in $urls; do
    case "$url" in
        https://huggingface.co/*)
            if [ -n "${HF_ENDPOINT:-}" ]; then url="$HF_ENDPOINT/${url#https://huggingface.co/}"; fi ;;
    esac
    echo "trying $url"
    if "${curl[@]}" --fail "$url" --output "$downloadedFile"; then
        set +o noglob
        if [ "$executable" = 1 ]; then chmod +x "$downloadedFile"; fi
        runHook postFetch
        exit 0
    fi
done
set +o noglob

echo "error: cannot download $name from any mirror"
exit 1
