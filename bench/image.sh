#!/usr/bin/env bash
# Image roots and workspaces, side by side in one run (docs/performance.md,
# "Images and workspaces"):
#  1. launch to agent: the default initramfs vs a directory root shared
#     over virtio-fs (the same tree, images/build.sh's rootfs/) vs an OCI
#     image (when BENCH_OCI=oci:DIR:TAG names one), alternating, N rounds,
#     medians;
#  2. workspace I/O in the guest: unpacking a tarball of 10,000 small
#     files and walking them (`find -exec stat`, the metadata work of a
#     `git status`), into a workspace vs into the guest's own overlay/tmpfs.
# Usage: bench/image.sh [N=5]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
cargo build -q -p bottle-host
img=${BOTTLE_IMAGE_DIR:-$PWD/.bottle/image}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mk() { # name image-line
  printf '[vm]\nbackend = "qemu"\nmemory_mib = 512\n%s\n[agent]\ncommand = ["/bin/true"]\n' "$2" > "$work/$1.toml"
}
mk initramfs ""
mk dir "image = \"rootfs:$img/rootfs\""
kinds="initramfs dir"
if [ -n "${BENCH_OCI:-}" ]; then mk oci "image = \"$BENCH_OCI\""; kinds="$kinds oci"; fi
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for i in $(seq "$n"); do
  for k in $kinds; do
    target/debug/bottle-host launch "$work/$k.toml" --state-dir "$work/state" 2> "$work/err" > /dev/null || true
    t=$(sed -nE 's/.*launch to agent ([0-9]+) ms.*/\1/p' "$work/err")
    [ -n "$t" ] || { cat "$work/err" >&2; exit 1; }
    echo "round $i $k: launch->agent $t ms"
    echo "$t" >> "$work/launch-$k"
  done
done
base=$(med < "$work/launch-initramfs")
for k in $kinds; do
  m=$(med < "$work/launch-$k")
  echo "median launch->agent $k: $m ms ($(awk -v a="$m" -v b="$base" 'BEGIN{printf "%.2f", a/b}')x the initramfs)"
done

# 2. Workspace I/O. The tarball is made on the host (10,000 files of 100
# bytes in 100 directories).
src="$work/src"; mkdir -p "$src/tree" "$work/ws"
for d in $(seq 100); do mkdir "$src/tree/d$d"; for f in $(seq 100); do printf '%0100d' "$f" > "$src/tree/d$d/f$f"; done; done
tar -C "$src" -cf "$work/ws/tree.tar" tree
cat > "$work/io.py" <<'PY'
import os, shutil, subprocess, time
for dest in ("/work/x", "/tmp/x"):
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    t = time.monotonic()
    subprocess.run(["tar", "-C", dest, "-xf", "/work/tree.tar"], check=True)
    untar = (time.monotonic() - t) * 1000
    t = time.monotonic()
    n = 0
    for root, dirs, files in os.walk(dest):
        for f in files:
            os.lstat(os.path.join(root, f))
            n += 1
    walk = (time.monotonic() - t) * 1000
    print(f"IO {dest} untar {untar:.0f} ms walk {walk:.0f} ms files {n}", flush=True)
shutil.rmtree("/work/x", ignore_errors=True)
PY
cat > "$work/io.toml" <<TOML
[vm]
backend = "qemu"
memory_mib = 1024
[agent]
command = ["/usr/bin/python3", "/work/io.py"]
[[mounts]]
host = "$work/ws"
guest = "/work"
TOML
cp "$work/io.py" "$work/ws/io.py"
for i in $(seq "$n"); do
  target/debug/bottle-host launch "$work/io.toml" --state-dir "$work/state" 2>/dev/null | grep '^IO' | sed "s/^/round $i /" | tee -a "$work/io"
done
for dest in /work/x /tmp/x; do
  u=$(grep " $dest " "$work/io" | awk '{print $6}' | med)
  w=$(grep " $dest " "$work/io" | awk '{print $9}' | med)
  echo "median $dest (10,000 files): untar $u ms, walk $w ms"
done
