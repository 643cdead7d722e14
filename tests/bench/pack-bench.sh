#!/usr/bin/env bash
# Benchmark: mpk pack vs the reference pipeline (mkfs.erofs 1.5 +
# veritysetup 2.6.1) vs `cp -r` vs `mpk reproduce --dir` (no image
# written) vs reading the files once, on one generated model folder, in
# one run. Prints wall/CPU time, peak RSS and ratios, and checks that mpk's
# output equals the reference byte for byte.
#
# Usage: tests/bench/pack-bench.sh [SIZE_MIB] [WORKDIR]
#   SIZE_MIB  total model size (default 2048 = 2 GiB), in 4 shards + small files
#   WORKDIR   where to put the model and outputs (default: a fresh folder in
#             /dev/shm, i.e. tmpfs, so the disk's durability cost is left out;
#             give a folder on a loop-mounted `mkfs.xfs -m reflink=1` image to
#             measure cloning: note cp -r reflinks there too)
#   DURABLE=1 in the environment: on a disk, compare durable writes (cp -r
#             and the reference pipeline each followed by `sync`; mpk pack
#             fsyncs its output before renaming it anyway)
# Needs: cargo, mkfs.erofs, veritysetup, GNU time (/usr/bin/time).
set -euo pipefail
size_mib=${1:-2048}
work=${2:-}
here=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "$work" ]; then
  base=/dev/shm; [ -d "$base" ] || base=${TMPDIR:-/tmp}
  work=$(mktemp -d "$base/mpk-bench.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
for t in mkfs.erofs veritysetup /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
(cd "$here" && cargo build --release -q -p mpk-cli)
mpk="$here/target/release/mpk"
id="bench-org/bench-model@0123456789abcdef0123456789abcdef01234567"
uuid=$("$mpk" pack --help >/dev/null; python3 -c "import uuid;print(uuid.uuid5(uuid.NAMESPACE_URL,'$id-inner'))")
salt=$(printf '%s' "$id" | sha256sum | cut -d' ' -f1)

model="$work/model"
mkdir -p "$model"
shard=$((size_mib / 4))
echo "generating $size_mib MiB model in $model ..."
for i in 1 2 3 4; do
  head -c $((shard * 1048576 + i * 1234)) /dev/urandom > "$model/model-0000$i-of-00004.safetensors"
done
printf '{"architectures":["Bench"],"hidden_size":4096}\n' > "$model/config.json"
head -c 1800000 /dev/urandom | base64 > "$model/tokenizer.json"
printf '# bench\n' > "$model/README.md"
sync

declare -A wall user sys rss
run() { # name, command... ; keeps the fastest round's figures
  local name=$1; shift
  local tf="$work/time.$name" w u s m
  /usr/bin/time -f "%e %U %S %M" -o "$tf" "$@" >/dev/null
  read -r w u s m < "$tf"
  if [ -z "${wall[$name]:-}" ] || python3 -c "import sys; sys.exit(not $w < ${wall[$name]})"; then
    wall[$name]=$w user[$name]=$u sys[$name]=$s rss[$name]=$m
  fi
}
reference() {
  env -u SOURCE_DATE_EPOCH mkfs.erofs --all-root -T0 "-U$uuid" "$work/ref.mpk" "$model" >/dev/null
  local h; h=$(stat -c %s "$work/ref.mpk")
  veritysetup --salt="$salt" --uuid="$uuid" --hash-offset="$h" \
    --root-hash-file="$work/ref.root" format "$work/ref.mpk" "$work/ref.mpk" >/dev/null
}
export -f reference; export work model uuid salt

clean() { rm -f "$work"/mpk.mpk "$work"/mpk.info "$work"/ref.mpk; rm -rf "$work/copy"; }
for round in 1 2 3; do
  # Alternate the order so no tool always runs on a warmer or fuller machine.
  order="read mpk ref cp repro"; [ $((round % 2)) = 0 ] && order="repro cp ref mpk read"
  for t in $order; do
    case $t in
      read) run read sh -c "cat '$model'/* > /dev/null" ;;
      mpk)  rm -f "$work"/mpk.mpk "$work"/mpk.info; sync
            run mpk "$mpk" pack "$model" --identity "$id" -o "$work/mpk.mpk" ;;
      ref)  rm -f "$work"/ref.mpk; sync
            if [ "${DURABLE:-}" = 1 ]; then run ref bash -c 'reference && sync'; else run ref bash -c reference; fi ;;
      cp)   rm -rf "$work/copy"; sync
            if [ "${DURABLE:-}" = 1 ]; then run cp sh -c "cp -r '$model' '$work/copy' && sync"; else run cp cp -r "$model" "$work/copy"; fi ;;
      repro) [ -f "$work/mpk.info" ] || "$mpk" pack "$model" --identity "$id" -o "$work/mpk.mpk" >/dev/null
            run repro "$mpk" reproduce --dir "$model" --identity "$id" --expect "$work/mpk.info" -q ;;
    esac
  done
done
cmp "$work/mpk.mpk" "$work/ref.mpk" && echo "byte-identical: mpk pack == reference pipeline"

printf '\n%-28s %9s %9s %9s %10s\n' "best of 3 rounds, $size_mib MiB" "wall s" "user s" "sys s" "peak RSS"
for n in read mpk ref cp repro; do
  printf '%-28s %9s %9s %9s %7s MiB\n' "$n" "${wall[$n]}" "${user[$n]}" "${sys[$n]}" "$(( ${rss[$n]} / 1024 ))"
done
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo
echo "reference pipeline / mpk pack : $(ratio "${wall[ref]}" "${wall[mpk]}")x"
echo "mpk pack / cp -r              : $(ratio "${wall[mpk]}" "${wall[cp]}")x"
echo "mpk pack / read once          : $(ratio "${wall[mpk]}" "${wall[read]}")x"
echo "reference / mpk reproduce     : $(ratio "${wall[ref]}" "${wall[repro]}")x"
echo "mpk pack / mpk reproduce      : $(ratio "${wall[mpk]}" "${wall[repro]}")x"
