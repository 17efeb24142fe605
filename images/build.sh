#!/usr/bin/env bash
# Build the default guest image: the Debian cloud kernel and an initramfs
# holding busybox, the static bottle-guest as /init, and the virtio/vsock
# kernel modules that kernel builds as modules (loaded by bottle-guest at
# boot, in dependency order). The result is cached under
# ${BOTTLE_IMAGE_DIR:-.bottle/image}: a second run rebuilds only what changed.
#
# Usage: images/build.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${BOTTLE_IMAGE_DIR:-$PWD/.bottle/image}
KPKG_META=linux-image-cloud-amd64
force=${1:-}
mkdir -p "$OUT"

step() { printf '[image] %s\n' "$*" >&2; }

# 1. Kernel: the versioned package the meta package depends on.
kpkg=$(apt-cache depends "$KPKG_META" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$kpkg" ]; then
  step "apt-cache knows no $KPKG_META; running apt-get update"
  ${SUDO:-} apt-get update -q >/dev/null
  kpkg=$(apt-cache depends "$KPKG_META" | awk '/Depends: linux-image-/ {print $2; exit}')
fi
kver=${kpkg#linux-image-}
if [ ! -f "$OUT/vmlinuz-$kver" ] || [ "$force" = --force ]; then
  step "downloading kernel package $kpkg"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download "$kpkg" >/dev/null 2>&1)
  step "extracting kernel and modules"
  dpkg -x "$tmp"/*.deb "$tmp/x"
  cp "$tmp/x/boot/vmlinuz-$kver" "$OUT/vmlinuz-$kver"
  rm -rf "$OUT/modules-$kver"
  mkdir -p "$OUT/modules-$kver"
  # Load order matters: each module after the ones it needs.
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
           virtio_blk virtio_console vsock vmw_vsock_virtio_transport_common \
           vmw_vsock_virtio_transport; do
    f=$(find "$tmp/x/lib/modules/$kver" -name "$m.ko*" | head -1)
    if [ -n "$f" ]; then
      cp "$f" "$OUT/modules-$kver/"
      echo "$(basename "$f")" >> "$OUT/modules-$kver/order"
    fi
  done
  rm -rf "$tmp"
fi
ln -sf "vmlinuz-$kver" "$OUT/vmlinuz"

# 2. The static guest init.
step "building static bottle-guest"
bash guest/build-static.sh >&2
guest="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/guest/bottle-guest"

# 3. The initramfs.
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "images/build.sh: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
stamp=$( { cat "$guest" "$busybox" "$OUT/modules-$kver/order" images/build.sh; if [ -d images/rootfs ]; then find images/rootfs -type f -print0 | sort -z | xargs -0r cat; fi; } | sha256sum | cut -c1-16)
if [ -f "$OUT/initramfs-$stamp.cpio.gz" ] && [ "$force" != --force ]; then
  step "initramfs up to date ($stamp)"
else
  step "assembling initramfs"
  root=$(mktemp -d)
  mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,run,tmp,root,usr/bin,usr/sbin,lib/modules/bottle}
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  cp "$guest" "$root/sbin/bottle-guest"
  ln -s sbin/bottle-guest "$root/init"
  ln -sf bottle-guest "$root/sbin/init"
  cp "$OUT/modules-$kver"/* "$root/lib/modules/bottle/"
  if [ -d images/rootfs ]; then cp -a images/rootfs/. "$root/"; fi
  echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
  echo "agent:x:1000:1000:agent:/tmp:/bin/sh" >> "$root/etc/passwd"
  printf 'root:x:0:\nagent:x:1000:\n' > "$root/etc/group"
  (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$OUT/initramfs-$stamp.cpio.gz"
  rm -rf "$root"
fi
ln -sf "initramfs-$stamp.cpio.gz" "$OUT/initramfs.cpio.gz"
step "kernel:    $OUT/vmlinuz"
step "initramfs: $OUT/initramfs.cpio.gz ($(stat -L -c %s "$OUT/initramfs.cpio.gz") bytes)"
