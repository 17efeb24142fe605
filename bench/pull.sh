#!/usr/bin/env bash
# Pull and unpack, ours against skopeo + umoci, in one run
# (docs/performance.md, "Images and workspaces" / "Pull and unpack"):
#   ours: `bottle-host image pull SRC --state-dir FRESH` (release build, the
#         shipped binary), from a local OCI layout and from a registry on
#         127.0.0.1, into a fresh state directory each round (nothing
#         cached); then the same pull again (the digest is cached);
#   peer: `skopeo copy SRC oci:TMP:TAG` + `umoci unpack --image TMP:TAG`
#         (as root, so owners are applied like ours).
# Images, built here with umoci from images/build.sh's rootfs/ (busybox,
# python3, curl; ~60 MB): `one` (one gzip layer) and `three` (three layers:
# the rootfs, 2,000 small files, a 16 MB file of random bytes).
# Alternating rounds, medians of wall time and CPU (user+sys of the whole
# process tree, /usr/bin/time). Usage: bench/pull.sh [N=5]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
[ "$(id -u)" = 0 ] || { echo "run as root (umoci applies owners like ours only as root)" >&2; exit 1; }
for p in skopeo umoci docker-registry /usr/bin/time; do
  command -v "$p" > /dev/null || { echo "missing: $p" >&2; exit 1; }
done
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q --release -p bottle-host
bh=$target/release/bottle-host
img=${BOTTLE_IMAGE_DIR:-$PWD/.bottle/image}
[ -d "$img/rootfs" ] || { echo "no $img/rootfs: run bash images/build.sh" >&2; exit 1; }
work=$(mktemp -d /var/tmp/bench-pull.XXXXXX)
reg_pid=
cleanup() { [ -z "$reg_pid" ] || kill "$reg_pid" 2> /dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The images.
oci=$work/oci
umoci init --layout "$oci"
umoci new --image "$oci:one"
umoci unpack --image "$oci:one" "$work/b1" > /dev/null
cp -a "$img/rootfs/." "$work/b1/rootfs/"
umoci repack --image "$oci:one" "$work/b1" > /dev/null
umoci new --image "$oci:three"
umoci unpack --image "$oci:three" "$work/b3" > /dev/null
cp -a "$img/rootfs/." "$work/b3/rootfs/"
umoci repack --refresh-bundle --image "$oci:three" "$work/b3" > /dev/null
mkdir -p "$work/b3/rootfs/srv/small"
for d in $(seq 20); do mkdir "$work/b3/rootfs/srv/small/d$d"; for f in $(seq 100); do printf '%0200d' "$f" > "$work/b3/rootfs/srv/small/d$d/f$f"; done; done
umoci repack --refresh-bundle --image "$oci:three" "$work/b3" > /dev/null
head -c 16M /dev/urandom > "$work/b3/rootfs/srv/blob"
umoci repack --image "$oci:three" "$work/b3" > /dev/null
rm -rf "$work/b1" "$work/b3"
echo "images: one $(du -sh "$oci/blobs" | cut -f1) of blobs in the layout (both images)"

# The registry on a free loopback port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" > /dev/null && break; sleep 0.1; done
reg=127.0.0.1:$port
for t in one three; do
  skopeo copy -q --dest-tls-verify=false "oci:$oci:$t" "docker://$reg/bench:$t"
done

# time_it LABEL CMD...: wall and CPU seconds appended to $work/t-LABEL.
time_it() {
  local label=$1; shift
  /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" > /dev/null 2> "$work/err" || { cat "$work/err" >&2; exit 1; }
  awk '{printf "%.3f %.3f\n", $1, $2 + $3}' "$work/time" >> "$work/t-$label"
  printf '  %-22s wall %6.2f s  cpu %6.2f s\n' "$label" $(awk '{print $1, $2 + $3}' "$work/time")
}
peer() { # SRC TAG DIR
  skopeo copy -q --src-tls-verify=false "$1" "oci:$3/oci:$2" && umoci unpack --image "$3/oci:$2" "$3/bundle"
}
export -f peer
for i in $(seq "$n"); do
  echo "round $i (load $(cut -d' ' -f1-3 /proc/loadavg))"
  for t in one three; do
    for from in oci reg; do
      if [ $from = oci ]; then src="oci:$oci:$t"; else src="docker://$reg/bench:$t"; fi
      # Alternate who goes first.
      order="ours peer"; [ $((i % 2)) = 0 ] && order="peer ours"
      for who in $order; do
        d=$(mktemp -d "$work/run.XXXX")
        if [ $who = ours ]; then
          time_it "ours-$t-$from" "$bh" image pull "$src" --state-dir "$d/state"
          time_it "cached-$t-$from" "$bh" image pull "$src" --state-dir "$d/state"
        else
          time_it "peer-$t-$from" bash -c 'peer "$@"' peer "$src" "$t" "$d"
        fi
        rm -rf "$d"
      done
    done
  done
done

med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "medians of $n rounds (s); ratio = peer / ours (> 1: ours faster)"
printf '%-12s %-5s %10s %10s %10s %10s %8s %8s %12s\n' image from ours-wall peer-wall ours-cpu peer-cpu wall-x cpu-x cached-wall
for t in one three; do
  for from in oci reg; do
    ow=$(awk '{print $1}' "$work/t-ours-$t-$from" | med); oc=$(awk '{print $2}' "$work/t-ours-$t-$from" | med)
    pw=$(awk '{print $1}' "$work/t-peer-$t-$from" | med); pc=$(awk '{print $2}' "$work/t-peer-$t-$from" | med)
    cw=$(awk '{print $1}' "$work/t-cached-$t-$from" | med)
    printf '%-12s %-5s %10s %10s %10s %10s %8s %8s %12s\n' "$t" "$from" "$ow" "$pw" "$oc" "$pc" \
      "$(awk -v a="$pw" -v b="$ow" 'BEGIN{printf "%.2f", a/b}')" \
      "$(awk -v a="$pc" -v b="$oc" 'BEGIN{printf "%.2f", a/b}')" "$cw"
  done
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
