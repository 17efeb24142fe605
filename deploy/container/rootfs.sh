#!/usr/bin/env bash
# Assemble the root filesystem of the bottle-host container image in a
# directory. The Containerfile runs this script in its build stage and
# copies the result into an empty image; tests/tests/container_rootfs.rs
# runs it on the test machine and boots a bottle from the result inside
# unprivileged namespaces (deploy/container/sandbox.sh). What is tested is
# what ships.
#
# The tree holds only what `bottle-host launch` with the QEMU backend
# opens: bottle-host, qemu-system-x86_64 (Debian's) with the TCG module,
# its firmware (qboot) and option ROMs, vhost-device-vsock (our patched
# 0.3.0, images/vsock-daemon.sh), every shared library they load (from
# ldd), the guest image (images/build.sh: kernel, initramfs, modules), the
# CA bundle for upstream TLS, a static busybox and GNU tail for the
# entrypoint (deploy/container/entrypoint.sh),
# and the non-root user `bottle` (uid and gid 10001).
#
# Usage: deploy/container/rootfs.sh OUT
# Inputs (environment), each with its default:
#   BOTTLE_HOST_BIN   ${CARGO_TARGET_DIR:-target}/release/bottle-host
#   BOTTLE_IMAGE_DIR  .bottle/image (run images/build.sh first)
#   VSOCK_DAEMON      vhost-device-vsock on PATH, else ~/.cargo/bin
#   BUSYBOX           busybox on PATH (must be static: busybox-static)
#   QEMU              /usr/bin/qemu-system-x86_64 (apt-get install qemu-system-x86)
# and this machine's GNU tail (coreutils) and CA bundle (ca-certificates).
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:?usage: deploy/container/rootfs.sh OUT}
BOTTLE_UID=10001
host_bin=${BOTTLE_HOST_BIN:-${CARGO_TARGET_DIR:-target}/release/bottle-host}
image=${BOTTLE_IMAGE_DIR:-.bottle/image}
qemu=${QEMU:-/usr/bin/qemu-system-x86_64}
busybox=${BUSYBOX:-$(command -v busybox || true)}
daemon=${VSOCK_DAEMON:-$(command -v vhost-device-vsock || echo "$HOME/.cargo/bin/vhost-device-vsock")}
certs=/etc/ssl/certs/ca-certificates.crt

die() { echo "rootfs.sh: $*" >&2; exit 1; }
[ -x "$host_bin" ] || die "no bottle-host at $host_bin (cargo build --release -p bottle-host, or set BOTTLE_HOST_BIN)"
for f in vmlinuz initramfs.cpio modules; do
  [ -f "$image/$f" ] || die "no $image/$f (bash images/build.sh, or set BOTTLE_IMAGE_DIR)"
done
[ -x "$qemu" ] || die "no $qemu (apt-get install qemu-system-x86)"
if [ -z "$busybox" ] || [ ! -x "$busybox" ]; then die "no busybox (apt-get install busybox-static)"; fi
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is dynamically linked (apt-get install busybox-static)"; fi
case "$("$daemon" --version 2>/dev/null || true)" in
  *+bottle-rst.1*) ;;
  *) die "no patched vhost-device-vsock at $daemon (bash images/vsock-daemon.sh)" ;;
esac
[ -f "$certs" ] || die "no $certs (apt-get install ca-certificates)"
# QEMU finds its modules and data relative to its binary (../lib, ../share).
tcg=$(dirname "$qemu")/../lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so
[ -f "$tcg" ] || die "no TCG module at $tcg"

rm -rf "$out"
mkdir -p "$out"
# Debian's merged /usr: /bin, /sbin, /lib and /lib64 point into /usr.
mkdir -p "$out"/usr/{bin,sbin,lib,lib64} "$out"/usr/local/bin
for d in bin sbin lib lib64; do ln -s "usr/$d" "$out/$d"; done
# Mount points: a container runtime (or sandbox.sh) mounts these; the
# Kubernetes Job puts emptyDirs on /tmp, /run/bot-bottle and
# /var/lib/bot-bottle and the manifest's ConfigMap on /etc/bottle.
mkdir -p "$out"/{dev,proc,sys,tmp,etc/bottle,run/bot-bottle,var/lib/bot-bottle}
chmod 1777 "$out/tmp"

# put SRC [DEST]: copy SRC (symlinks followed) to DEST in the tree
# (default: SRC's own path under the merged /usr).
put() {
  local src=$1 dest=${2:-$1}
  case $dest in /bin/* | /sbin/* | /lib/* | /lib64/*) dest=/usr$dest ;; esac
  mkdir -p "$out$(dirname "$dest")"
  cp -L "$src" "$out$dest"
}
# put_with_libs FILE [DEST]: FILE and every shared library it loads.
put_with_libs() {
  put "$@"
  local lib
  for lib in $(ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    [ -e "$out$lib" ] || put "$lib"
  done
}

put_with_libs "$host_bin" /usr/local/bin/bottle-host
put_with_libs "$daemon" /usr/local/bin/vhost-device-vsock
put_with_libs "$qemu" /usr/bin/qemu-system-x86_64
put_with_libs "$tcg" /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so
share=$(dirname "$qemu")/../share/qemu
for f in qboot.rom linuxboot_dma.bin kvmvapic.bin; do put "$share/$f" "/usr/share/qemu/$f"; done
put "$certs"

# The entrypoint's shell and tools: busybox (sh, awk, ls, ...) and GNU
# tail, which can follow a file until a process exits (--pid).
put "$busybox" /usr/bin/busybox
for applet in sh awk cat env id kill ls mkdir sleep; do
  ln -s busybox "$out/usr/bin/$applet"
done
put_with_libs /usr/bin/tail
install -m 0755 deploy/container/entrypoint.sh "$out/usr/local/bin/bottle-entrypoint"

# The guest image, where the entrypoint points BOTTLE_IMAGE_DIR.
for f in vmlinuz initramfs.cpio modules; do put "$image/$f" "/usr/share/bot-bottle/image/$f"; done

cat >"$out/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/usr/sbin/nologin
bottle:x:$BOTTLE_UID:$BOTTLE_UID:bot-bottle:/var/lib/bot-bottle:/usr/sbin/nologin
PASSWD
cat >"$out/etc/group" <<GROUP
root:x:0:
bottle:x:$BOTTLE_UID:
GROUP
# Replaced by the runtime's; present so a read-only root can be mounted over.
: >"$out/etc/resolv.conf"
: >"$out/etc/hosts"
# The state and run directories belong to the user that runs bottles.
if [ "$(id -u)" -eq 0 ]; then
  chown "$BOTTLE_UID:$BOTTLE_UID" "$out/run/bot-bottle" "$out/var/lib/bot-bottle"
fi
chmod 0700 "$out/run/bot-bottle" "$out/var/lib/bot-bottle"
echo "rootfs.sh: $out ($(du -sm "$out" | cut -f1) MiB)" >&2
