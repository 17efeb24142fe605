#!/usr/bin/env bash
# How an image root reaches the VM, measured (docs/images.md, "How the root
# reaches the VM"; numbers in docs/performance.md, "Root delivery"):
#   virtiofs: the unpacked tree shared read-only by virtiofsd (the default);
#   ext4:     the same tree as a read-only ext4 disk on virtio-blk
#             (BOTTLE_ROOT_DELIVERY=ext4, built with mkfs.ext4 -d).
# The image is images/build.sh's rootfs/ (busybox, python3, curl) as a
# one-layer OCI layout. Measured, alternating, medians of N rounds:
#  1. host preparation: unpack (`image pull` into a fresh state directory)
#     and `mkfs.ext4 -d` with the parameters launch used; disk space;
#  2. per launch: launch to agent (`bottle: timing`), in the guest a cold
#     Python import of a few standard modules and a read of every file of
#     the root (`find / -xdev -type f -exec cat {} +`), and host memory
#     (PSS from smaps_rollup) of virtiofsd and QEMU while the agent idles.
# Release build (the shipped binary). The guest must be built from this
# tree (BOTTLE_IMAGE_DIR=/tmp/bench-image bash images/build.sh).
# Usage: BOTTLE_IMAGE_DIR=... bench/root.sh [N=5]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q --release -p bottle-host
bh=$target/release/bottle-host
img=${BOTTLE_IMAGE_DIR:-$PWD/.bottle/image}
export BOTTLE_IMAGE_DIR=$img
work=$(mktemp -d /var/tmp/bench-root.XXXXXX)
trap 'rm -rf "$work"' EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

oci=$work/oci
umoci init --layout "$oci"
umoci new --image "$oci:one"
umoci unpack --image "$oci:one" "$work/b" > /dev/null
cp -a "$img/rootfs/." "$work/b/rootfs/"
umoci repack --image "$oci:one" "$work/b" > /dev/null
rm -rf "$work/b"

# The launch state (the image cached once, its ext4 built by a first launch).
cat > "$work/bottle.toml" <<TOML
[vm]
backend = "qemu"
memory_mib = 512
image = "oci:$oci:one"
[agent]
command = ["/bin/sh", "-c", "t() { read u _ < /proc/uptime; echo \$u; }; a=\$(t); python3 -c 'import json, email, http.client, xml.dom.minidom, asyncio, unittest'; b=\$(t); n=\$(find / -xdev -type f -exec cat {} + 2>/dev/null | wc -c); c=\$(t); echo \"READ \$a \$b \$c \$n\"; echo READY; sleep 4"]
TOML
state=$work/state
BOTTLE_ROOT_DELIVERY=ext4 "$bh" launch "$work/bottle.toml" --state-dir "$state" > /dev/null 2> "$work/err" \
  || { cat "$work/err" >&2; exit 1; }
entry=$(dirname "$(find "$state/images" -name root.ext4 | head -1)")
kib=$(dumpe2fs -h "$entry/root.ext4" 2> /dev/null | awk -F: '/^Block count/ {c=$2} /^Block size/ {s=$2} END {print c*s/1024}')
inodes=$(dumpe2fs -h "$entry/root.ext4" 2> /dev/null | awk -F: '/^Inode count/ {print $2+0}')
echo "disk: tree $(du -sk "$entry/rootfs" | cut -f1) KiB ($(find "$entry/rootfs" | wc -l) entries);" \
  "root.ext4 $(du -sk "$entry/root.ext4" | cut -f1) KiB allocated, $kib KiB apparent"

# 1. Host preparation.
for i in $(seq "$n"); do
  d=$(mktemp -d "$work/prep.XXXX")
  /usr/bin/time -f '%e' -o "$work/t" "$bh" image pull "oci:$oci:one" --state-dir "$d/state" > /dev/null 2>&1
  u=$(cat "$work/t")
  tree=$(dirname "$(find "$d/state/images" -maxdepth 4 -name rootfs | head -1)")/rootfs
  /usr/bin/time -f '%e' -o "$work/t" mkfs.ext4 -q -F -t ext4 -b 4096 -O ^has_journal -L bottle-root \
    -N "$inodes" -E root_owner=0:0 -d "$tree" "$d/root.ext4" "${kib}k" > /dev/null 2>&1
  m=$(cat "$work/t")
  echo "prep round $i: unpack $u s, mkfs.ext4 $m s (load $(load))"
  echo "$u" >> "$work/unpack"; echo "$m" >> "$work/mkfs"
  rm -rf "$d"
done

# 2. Launches, alternating.
pss() { # PIDS...: summed Pss in KiB
  local s=0 p
  for p in "$@"; do s=$((s + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2> /dev/null || echo 0))); done
  echo $s
}
for i in $(seq "$n"); do
  order="virtiofs ext4"; [ $((i % 2)) = 0 ] && order="ext4 virtiofs"
  for k in $order; do
    BOTTLE_ROOT_DELIVERY=$k "$bh" launch "$work/bottle.toml" --state-dir "$state" > "$work/out" 2> "$work/err" &
    lp=$!
    for _ in $(seq 600); do grep -q READY "$work/out" 2> /dev/null && break; sleep 0.1; done
    # The bottle's processes: descendants of this launch (virtiofsd
    # forks into its sandbox).
    kids=$( { pgrep -P "$lp" || true; } | tr '\n' ' ')
    kids="$kids $(for p in $kids; do pgrep -P "$p" || true; done | tr "\n" " ")"
    vfs=() qemu=()
    for p in $kids; do
      case $(cat "/proc/$p/comm") in virtiofsd) vfs+=("$p") ;; qemu-system*) qemu+=("$p") ;; esac
    done
    mv=$(pss "${vfs[@]}"); mq=$(pss "${qemu[@]}")
    wait "$lp" || true
    t=$(sed -nE 's/.*launch to agent ([0-9]+) ms.*/\1/p' "$work/err")
    read -r _ a b c bytes < <(grep '^READ' "$work/out")
    [ -n "$t" ] && [ -n "${c:-}" ] || { cat "$work/err" "$work/out" >&2; exit 1; }
    py=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.0f", (b-a)*1000}')
    rd=$(awk -v b="$b" -v c="$c" 'BEGIN{printf "%.0f", (c-b)*1000}')
    echo "round $i $k: launch->agent $t ms, python import $py ms, read $bytes bytes $rd ms, PSS virtiofsd ${mv} KiB qemu ${mq} KiB (load $(load))"
    echo "$t $py $rd $mv $mq" >> "$work/r-$k"
  done
done

echo
echo "medians of $n rounds"
echo "prep: unpack $(med < "$work/unpack") s, mkfs.ext4 $(med < "$work/mkfs") s"
for k in virtiofs ext4; do
  col() { awk -v c="$1" '{print $c}' "$work/r-$k" | med; }
  echo "$k: launch->agent $(col 1) ms, python import $(col 2) ms, full read $(col 3) ms, PSS virtiofsd $(col 4) KiB, qemu $(col 5) KiB"
done
echo "load at the end: $(load)"
