#!/usr/bin/env bash
# Installs Debian packages of another suite into a private prefix, without
# touching the system's dpkg state: a private apt configuration (its own
# sources list, lists, cache, and an empty dpkg status, so apt resolves the
# whole dependency closure), `apt-get download`, `dpkg-deb -x`. Each binary
# named with --bin gets a patched copy in PREFIX/bin whose ELF interpreter
# and rpath point into the prefix (the suite's own glibc), so it runs on
# bookworm as a normal executable (/proc/self/exe is the binary itself, not
# the loader: Nix re-executes itself for its build hook).
#
#   private-prefix.sh PREFIX SUITE --bin usr/bin/nix PACKAGE...
#
# Idempotent and cached: when PREFIX/.done lists the same suite, packages
# and binaries, nothing is downloaded again (and .deb files an interrupted
# run left are reused). DEBIAN_MIRROR overrides http://deb.debian.org/debian. Needs apt-get, dpkg-deb and
# patchelf (bookworm's). Used by .ci/run for Nix 2.26 (trixie's nix-bin) and
# mkfs.erofs 1.8.6 (trixie's erofs-utils, schema modelwrap-v2).
set -euo pipefail

prefix=$1 suite=$2
shift 2
bins=()
pkgs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bins+=("$2"); shift 2 ;;
        *) pkgs+=("$1"); shift ;;
    esac
done
[ ${#pkgs[@]} -gt 0 ] || { echo "usage: $0 PREFIX SUITE [--bin usr/bin/X]... PACKAGE..." >&2; exit 2; }

mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
stamp="suite=$suite pkgs=${pkgs[*]} bins=${bins[*]}"
if [ -f "$prefix/.done" ] && [ "$(cat "$prefix/.done")" = "$stamp" ]; then
    echo "private-prefix: $prefix is ready ($stamp)"
    exit 0
fi

apt_dir=$prefix/apt
root=$prefix/root
rm -rf "$root" "$prefix/bin" "$prefix/.done"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$root" "$prefix/bin"
cat > "$apt_dir/sources.list" <<EOF
deb ${DEBIAN_MIRROR:-http://deb.debian.org/debian} $suite main
EOF
apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::State::status=/dev/null"
    -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Architecture=amd64"
    -o "APT::Architectures::=amd64"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
)
apt-get "${apt_opts[@]}" -qq update

# The closure of hard dependencies (virtual packages, shown as <name>, are
# provided by a real package already in the closure).
mapfile -t closure < <(
    apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests \
        --no-conflicts --no-breaks --no-replaces --no-enhances "${pkgs[@]}" |
        grep -E '^[a-z0-9]' | sort -u
)
echo "private-prefix: ${#closure[@]} packages from $suite for ${pkgs[*]}"
# Only what an earlier, interrupted run has not downloaded yet.
missing=()
for p in "${closure[@]}"; do
    compgen -G "$apt_dir/debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" -qq download "${missing[@]}")
fi
for deb in "$apt_dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$root"
done

libs=$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu
for b in "${bins[@]}"; do
    out=$prefix/bin/$(basename "$b")
    cp "$root/$b" "$out"
    chmod u+w "$out"
    patchelf --force-rpath \
        --set-interpreter "$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
        --set-rpath "$libs" "$out"
done
printf '%s' "$stamp" > "$prefix/.done"
echo "private-prefix: $prefix ready"
