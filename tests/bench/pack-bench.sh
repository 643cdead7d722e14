#!/usr/bin/env bash
# Benchmark: mpk pack vs the reference pipeline (mkfs.erofs 1.5 +
# veritysetup 2.6.1) vs `cp -r` vs `mpk reproduce --dir` (no image
# written) vs reading the files once vs hashing them once on every core
# (sha256sum, the floor of any reproduction), on one generated model
# folder, in one run, rounds alternating. Prints wall/CPU time, peak RSS
# and the ratios, and checks that mpk's output equals the reference byte
# for byte.
#
# Usage: tests/bench/pack-bench.sh [SIZE_MIB] [WORKDIR]
#   SIZE_MIB  total model size (default 2048 = 2 GiB)
#   WORKDIR   where to put the model and outputs (default: a fresh folder in
#             /dev/shm, i.e. tmpfs, so the disk's durability cost is left out)
# Environment:
#   SHAPE=shards   4 large shards + config/tokenizer (default)
#   SHAPE=small    FILES small files (default 100000) in 100 folders, same total
#   SHAPE=hub      the network shape: 3 shards of 4/7, 2/7 and 1/7 of SIZE_MIB
#                  (228: 128, 64 and 32 MiB) plus small files, served by the
#                  mock Hub (mpk-hub's example mock_hub) with every connection
#                  capped at CAP_MIB MiB/s (default 25; 0: no cap; no
#                  aggregate limit); times `mpk fetch` and `mpk reproduce
#                  --lock` on one connection and on the default number
#                  (MPK_CONNECTIONS, else 8), and `mpk reproduce --dir` on
#                  the same files; prints the ratios, the ceiling N x cap and
#                  peak RSS. `CAP_MIB=0 SHAPE=hub ... 2048`: reproduce from
#                  the Hub vs --dir on loopback, and vs floor2 (every byte
#                  SHA-256'd twice on all cores: the lock check and the
#                  verity leaves, the least a Hub reproduction can do).
#   DURABLE=1      on a disk: cp -r and the reference each followed by `sync`
#                  (mpk pack fsyncs its output before renaming it anyway)
#   XFS=1          make a loop-mounted `mkfs.xfs -m reflink=1` image (needs
#                  root) and work there: mpk pack clones the shards' blocks;
#                  compare pack with reproduce (cp -r reflinks there too)
#   SPARSE=1       sparse shards (no disk or RAM for the input): only mpk pack
#                  and mpk reproduce run, to show peak RSS does not grow with
#                  size (WORKDIR must hold SIZE_MIB of output: use a disk)
#   ROUNDS=3       rounds (best wall time of each tool is kept)
#   SCHEMA=modelwrap-v2  pack and reproduce with that schema; the reference
#                  is then mkfs.erofs 1.8.6 ($MPK_MKFS_EROFS_186, -b4096
#                  --workers=<cores>) + veritysetup
#   SCHEMAS=1      only mpk pack and mpk reproduce, each with modelwrap-v1
#                  and modelwrap-v2, rounds alternating: the v2/v1 ratios
# Needs: cargo, mkfs.erofs, veritysetup, GNU time (/usr/bin/time), python3,
# openssl.
set -euo pipefail
size_mib=${1:-2048}
work=${2:-}
shape=${SHAPE:-shards}
rounds=${ROUNDS:-3}
here=$(cd "$(dirname "$0")/../.." && pwd)
cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c"; done' EXIT
if [ "${XFS:-}" = 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "XFS=1 needs root (loop mount)" >&2; exit 1; }
  img=$(mktemp /var/tmp/mpk-bench-xfs.XXXXXX)
  truncate -s $(( size_mib * 4 + 1024 ))M "$img"
  mkfs.xfs -q -f -m reflink=1 "$img"
  work=$(mktemp -d /tmp/mpk-bench-mnt.XXXXXX)
  mount -o loop "$img" "$work"
  cleanup+=("umount '$work'; rmdir '$work'; rm -f '$img'")
elif [ -z "$work" ]; then
  base=/dev/shm; [ -d "$base" ] || base=${TMPDIR:-/tmp}
  work=$(mktemp -d "$base/mpk-bench.XXXXXX")
  cleanup+=("rm -rf '$work'")
else
  mkdir -p "$work"
  work=$(cd "$work" && pwd)
  cleanup+=("rm -rf '$work/model' '$work/copy' '$work'/*.mpk '$work'/*.info '$work'/time.*")
fi
for t in mkfs.erofs veritysetup /usr/bin/time python3 openssl; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
(cd "$here" && cargo build --release -q -p mpk-cli)
[ "$shape" = hub ] && (cd "$here" && cargo build --release -q -p mpk-hub --features mock --example mock_hub)
mpk="$here/target/release/mpk"
id="bench-org/bench-model@0123456789abcdef0123456789abcdef01234567"
uuid=$(python3 -c "import uuid;print(uuid.uuid5(uuid.NAMESPACE_URL,'$id-inner'))")
salt=$(printf '%s' "$id" | sha256sum | cut -d' ' -f1)
cores=$(nproc)
schema=${SCHEMA:-modelwrap-v1}
mkfs=mkfs.erofs mkfs_args=()
if [ "$schema" = modelwrap-v2 ]; then
  mkfs=${MPK_MKFS_EROFS_186:-mkfs.erofs} mkfs_args=(-b4096 "--workers=$cores")
fi

model="$work/model"
rm -rf "$model"; mkdir -p "$model"
echo "generating a $size_mib MiB model ($shape${SPARSE:+, sparse}) in $model ..."
case $shape in
  shards)
    shard=$((size_mib / 4))
    for i in 1 2 3 4; do
      f="$model/model-0000$i-of-00004.safetensors"
      if [ "${SPARSE:-}" = 1 ]; then
        truncate -s $((shard * 1048576 + i * 1234)) "$f"
        printf 'header %d' "$i" | dd of="$f" conv=notrunc status=none
      else
        head -c $((shard * 1048576 + i * 1234)) /dev/urandom > "$f"
      fi
    done
    printf '{"architectures":["Bench"],"hidden_size":4096}\n' > "$model/config.json"
    head -c 1800000 /dev/urandom | base64 > "$model/tokenizer.json"
    printf '# bench\n' > "$model/README.md"
    ;;
  small)
    files=${FILES:-100000}
    python3 - "$model" "$files" "$((size_mib * 1048576))" <<'EOF'
import os, random, sys
root, n, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
avg = total // n
blob = os.urandom(4 * avg + 65536)
for i in range(n):
    d = os.path.join(root, f"d{i % 100:02d}")
    if i < 100:
        os.makedirs(d)
    size = rng.randint(0, 2 * avg)
    off = rng.randint(0, len(blob) - size)
    with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
        f.write(blob[off:off + size])
EOF
    ;;
  hub)
    unit=$((size_mib / 7))
    for i in 1 2 3; do
      f="$model/model-0000$i-of-00003.safetensors"
      head -c $(( (unit << (3 - i)) * 1048576 + i * 1234 )) /dev/urandom > "$f"
    done
    printf '{"architectures":["Bench"],"hidden_size":4096}\n' > "$model/config.json"
    head -c 1800000 /dev/urandom | base64 > "$model/tokenizer.json"
    printf '# bench\n' > "$model/README.md"
    ;;
  *) echo "unknown SHAPE=$shape" >&2; exit 1 ;;
esac
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
  # shellcheck disable=SC2086 # mkfs_args: no spaces
  env -u SOURCE_DATE_EPOCH "$mkfs" --all-root -T0 "-U$uuid" $mkfs_args "$work/ref.mpk" "$model" >/dev/null
  local h; h=$(stat -c %s "$work/ref.mpk")
  veritysetup --salt="$salt" --uuid="$uuid" --hash-offset="$h" \
    --root-hash-file="$work/ref.root" format "$work/ref.mpk" "$work/ref.mpk" >/dev/null
}
# The floor of any reproduction: read and SHA-256 every byte once, on all
# cores, with OpenSSL's SHA-256 (SHA-NI where the CPU has it; coreutils'
# sha256sum does not use it). The dm-verity tree adds 1/128 more, and a
# 32-byte salt per block.
per_proc=1; [ "$shape" = small ] && per_proc=256
hashfloor() {
  find "$model" -type f -print0 | xargs -0 -P "$cores" -n "$per_proc" openssl dgst -sha256 >/dev/null
}
# From the Hub, every byte is hashed twice: its file's SHA-256 (checked
# against the lock: that check is what ties the bytes to the commit) and
# its dm-verity leaf. The floor of that: every file hashed twice, on all
# cores, reading nothing from the network.
hashfloor2() {
  find "$model" -type f -print0 | sed -z 'p' | xargs -0 -P "$cores" -n 1 openssl dgst -sha256 >/dev/null
}
export -f reference hashfloor hashfloor2; export work model uuid salt cores per_proc mkfs
export mkfs_args="${mkfs_args[*]}"

tools="read floor mpk ref cp repro"
[ "${SPARSE:-}" = 1 ] && tools="mpk repro"
[ "${SCHEMAS:-}" = 1 ] && tools="mpk mpk2 repro repro2"
if [ "$shape" = hub ]; then
  cap_mib=${CAP_MIB:-25}
  conns=${MPK_CONNECTIONS:-8}
  "$mpk" pack "$model" --identity "$id" -o "$work/mpk.mpk" -q >/dev/null
  rm -f "$work/mpk.mpk"
  # The mock Hub, in its own process (its memory is not mpk's), until the
  # fifo that is its standard input closes.
  mkfifo "$work/hub.in"
  "$here/target/release/examples/mock_hub" "$model" "${id%@*}" "${id#*@}" \
    $((cap_mib * 1048576)) < "$work/hub.in" > "$work/hub.out" &
  hub_pid=$!
  exec 9> "$work/hub.in"
  cleanup=("exec 9>&-; wait $hub_pid" "${cleanup[@]}")
  until [ -s "$work/hub.out" ]; do sleep 0.1; done
  export HF_ENDPOINT=$(head -n1 "$work/hub.out") HF_HUB_CACHE="$work/cache"
  unset HF_TOKEN HF_HUB_OFFLINE
  "$mpk" lock "${id%@*}" -o "$work/bench.lock.json" -q
  tools="fetch1 fetchN repro1 reproN repro floor2"
fi
for round in $(seq 1 "$rounds"); do
  # Alternate the order so no tool always runs on a warmer or fuller machine.
  order=$tools
  [ $((round % 2)) = 0 ] && order=$(echo "$tools" | tr ' ' '\n' | tac | tr '\n' ' ')
  for t in $order; do
    case $t in
      read) run read sh -c "find '$model' -type f -print0 | xargs -0 cat > /dev/null" ;;
      floor) run floor bash -c hashfloor ;;
      floor2) run floor2 bash -c hashfloor2 ;;
      mpk)  rm -f "$work"/mpk.mpk "$work"/mpk.info; sync
            run mpk "$mpk" pack "$model" --identity "$id" -o "$work/mpk.mpk" --schema "$schema" -q ;;
      mpk2) rm -f "$work"/mpk2.mpk "$work"/mpk2.info; sync
            run mpk2 "$mpk" pack "$model" --identity "$id" -o "$work/mpk2.mpk" --schema modelwrap-v2 -q ;;
      ref)  rm -f "$work"/ref.mpk; sync
            if [ "${DURABLE:-}" = 1 ]; then run ref bash -c 'reference && sync'; else run ref bash -c reference; fi ;;
      cp)   rm -rf "$work/copy"; sync
            if [ "${DURABLE:-}" = 1 ]; then run cp sh -c "cp -r '$model' '$work/copy' && sync"; else run cp cp -r "$model" "$work/copy"; fi ;;
      repro) [ -f "$work/mpk.info" ] || "$mpk" pack "$model" --identity "$id" -o "$work/mpk.mpk" --schema "$schema" -q >/dev/null
            run repro "$mpk" reproduce --dir "$model" --identity "$id" --expect "$work/mpk.info" --schema "$schema" -q ;;
      repro2) [ -f "$work/mpk2.info" ] || "$mpk" pack "$model" --identity "$id" -o "$work/mpk2.mpk" --schema modelwrap-v2 -q >/dev/null
            run repro2 "$mpk" reproduce --dir "$model" --identity "$id" --expect "$work/mpk2.info" --schema modelwrap-v2 -q ;;
      fetch1|fetchN) rm -rf "$work/cache"
            c=$conns; [ "$t" = fetch1 ] && c=1
            run "$t" "$mpk" fetch "$work/bench.lock.json" -q --connections "$c" ;;
      repro1|reproN) c=$conns; [ "$t" = repro1 ] && c=1
            run "$t" "$mpk" reproduce --lock "$work/bench.lock.json" --expect "$work/mpk.info" -q --connections "$c" ;;
    esac
  done
done
if [ -f "$work/ref.mpk" ]; then
  cmp "$work/mpk.mpk" "$work/ref.mpk" && echo "byte-identical: mpk pack == reference pipeline"
fi

label="$size_mib MiB $shape${SPARSE:+ sparse}${XFS:+ on XFS}${DURABLE:+ durable} $schema"
[ "$shape" = hub ] && label="$label, cap ${cap_mib} MiB/s/conn, N=$conns"
printf '\n%-32s %8s %8s %8s %10s\n' "best of $rounds, $label" "wall s" "user s" "sys s" "peak RSS"
for n in $tools; do
  printf '%-32s %8s %8s %8s %7s MiB\n' "$n" "${wall[$n]}" "${user[$n]}" "${sys[$n]}" "$(( ${rss[$n]} / 1024 ))"
done
ratio() { python3 -c "print(f'{$1/$2:.2f}x' if $2 > 0 else 'n/a (too fast to time)')"; }
echo
if [ "${SCHEMAS:-}" = 1 ]; then
  echo "(mpk, repro: modelwrap-v1; mpk2, repro2: modelwrap-v2)"
  echo "pack v2 / v1 wall             : $(ratio "${wall[mpk2]}" "${wall[mpk]}")"
  echo "pack v2 / v1 peak RSS         : $(ratio "${rss[mpk2]}" "${rss[mpk]}")"
  echo "reproduce v2 / v1 wall        : $(ratio "${wall[repro2]}" "${wall[repro]}")"
  echo "reproduce v2 / v1 peak RSS    : $(ratio "${rss[repro2]}" "${rss[repro]}")"
elif [ "$shape" = hub ]; then
  total=$(du -sbL "$model" | cut -f1)
  mibs() { python3 -c "print(f'{$total/1048576/$1:.0f} MiB/s' if $1 > 0 else 'n/a')"; }
  if [ "$cap_mib" -gt 0 ]; then
    echo "ceiling: N x cap = $conns x $cap_mib = $((conns * cap_mib)) MiB/s, so at most ${conns}x faster than 1 connection"
  fi
  echo "mpk fetch, 1 / $conns connections           : $(ratio "${wall[fetch1]}" "${wall[fetchN]}")  ($(mibs "${wall[fetch1]}") vs $(mibs "${wall[fetchN]}"))"
  echo "mpk reproduce --lock, 1 / $conns connections: $(ratio "${wall[repro1]}" "${wall[reproN]}")  ($(mibs "${wall[repro1]}") vs $(mibs "${wall[reproN]}"))"
  echo "mpk reproduce from the Hub / --dir      : $(ratio "${wall[reproN]}" "${wall[repro]}")"
  echo "mpk reproduce from the Hub / 2-hash floor: $(ratio "${wall[reproN]}" "${wall[floor2]}")  (floor2: every byte SHA-256'd twice on $cores cores, as the lock check + the verity leaves need)"
  echo "2-hash floor / --dir                    : $(ratio "${wall[floor2]}" "${wall[repro]}")  (the least any Hub reproduction that checks the lock can be, vs --dir)"
  exit 0
fi
if [ "${SPARSE:-}" != 1 ]; then
  echo "reference pipeline / mpk pack : $(ratio "${wall[ref]}" "${wall[mpk]}")"
  echo "mpk pack / cp -r              : $(ratio "${wall[mpk]}" "${wall[cp]}")"
  echo "mpk pack / read once          : $(ratio "${wall[mpk]}" "${wall[read]}")"
  echo "reference / mpk reproduce     : $(ratio "${wall[ref]}" "${wall[repro]}")"
  echo "reference / hash floor        : $(ratio "${wall[ref]}" "${wall[floor]}")  (the most any reproduce can reach here)"
  echo "mpk reproduce / hash floor    : $(ratio "${wall[repro]}" "${wall[floor]}")"
fi
echo "mpk pack / mpk reproduce      : $(ratio "${wall[mpk]}" "${wall[repro]}")"
