#!/usr/bin/env bash
# The main job on the built-in example: build mpk, pack
# tests/example/model, verify the pack, cross-check it byte for byte
# against the reference pipeline (mkfs.erofs 1.5 + veritysetup 2.6.1), and
# compute its deployment document on the example base image
# (vm-images/example): the expected SEV-SNP and TDX launch measurements a
# client compares. Installs what it needs on a fresh Debian bookworm
# machine (as root).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
if ! command -v mkfs.erofs >/dev/null || ! command -v veritysetup >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq erofs-utils cryptsetup-bin >/dev/null
  else
    echo "note: mkfs.erofs/veritysetup missing; the cross-check step will fail" >&2
  fi
fi
echo "== building mpk (release; the first build takes a few minutes)"
cargo build --release -p mpk-cli 2>&1 | grep -E '^\s*(Compiling|Finished|error|warning)' | grep -E 'Compiling mpk|Finished|error|warning' || true
test -x target/release/mpk || { echo "error: the build failed" >&2; exit 1; }
mpk=target/release/mpk
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
id="mpk-examples/tiny-dense@5f1c0e2d9a8b7c6d5e4f30211203f4e5d6c7b8a9"

echo "== mpk pack tests/example/model"
"$mpk" pack tests/example/model --identity "$id" -o "$out/tiny.mpk" --json > "$out/report.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('reference:', r['reference']); [print('  %-22s %6d  %s' % (f['path'], f['size'], f['sha256'])) for f in r['files']]" "$out/report.json"
echo "== mpk verify"
"$mpk" verify "$out/tiny.mpk" --ref "$out/tiny.info" --identity "$id"
echo "== cross-check with the reference pipeline (--backend tools)"
"$mpk" pack tests/example/model --identity "$id" -o "$out/ref.mpk" --backend tools >/dev/null
cmp "$out/tiny.mpk" "$out/ref.mpk"
cmp "$out/tiny.info" "$out/ref.info"
echo "identical: $(cat "$out/tiny.info")"
echo "== mpk measure deployment --base vm-images/example"
"$mpk" measure deployment --base vm-images/example --model "$out/tiny.info" --identity "$id" -o "$out/deployment.json"
python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
print('cmdline:          ', d['cmdline'])
print('snp_measurement:  ', d['snp_measurement'])
for k, v in d['tdx_measurement'].items():
    print('tdx %-14s' % (k + ':'), v)
" "$out/deployment.json"
