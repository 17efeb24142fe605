#!/usr/bin/env bash
# Launch timing: N launches of a trivial agent (`true`), each printing
# bottle-host's split of launch -> agent's first instruction into host
# setup, VM boot and guest init; prints each run and the medians, with the
# backend and accelerator. Needs the image (images/build.sh) and the
# workspace built. Usage: bench/launch.sh [N=5]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
cargo build -q -p bottle-host
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/b.toml" <<'TOML'
[vm]
memory_mib = 512
[agent]
command = ["/bin/true"]
TOML
: > "$work/times"
for i in $(seq "$n"); do
  start=$(date +%s%N)
  target/debug/bottle-host launch "$work/b.toml" --state-dir "$work/state" 2> "$work/err" > /dev/null || true
  end=$(date +%s%N)
  line=$(grep 'bottle: timing' "$work/err" || { cat "$work/err" >&2; exit 1; })
  backend=$(grep 'bottle: backend' "$work/err" | sed 's/bottle: backend *//')
  read -r setup boot init total < <(echo "$line" | sed -E 's/.*host setup ([0-9]+) ms, VM boot ([0-9]+) ms, guest init ([0-9]+) ms \(launch to agent ([0-9]+) ms\).*/\1 \2 \3 \4/')
  wall=$(( (end - start) / 1000000 ))
  echo "run $i: host setup $setup ms, VM boot $boot ms, guest init $init ms, launch->agent $total ms, whole launch (to power-off) $wall ms"
  echo "$setup $boot $init $total $wall" >> "$work/times"
done
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "backend: $backend"
printf 'median: host setup %s ms, VM boot %s ms, guest init %s ms, launch->agent %s ms, whole launch %s ms\n' \
  "$(cut -d' ' -f1 "$work/times" | med)" "$(cut -d' ' -f2 "$work/times" | med)" \
  "$(cut -d' ' -f3 "$work/times" | med)" "$(cut -d' ' -f4 "$work/times" | med)" \
  "$(cut -d' ' -f5 "$work/times" | med)"
