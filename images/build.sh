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
# Load order matters: each module after the ones it needs. The second list
# is loaded only when the bottle shares directories (virtio-fs: an OCI
# image root with an overlay over it, workspaces).
MODS="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
virtio_blk virtio_console vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport"
FSMODS="fuse virtiofs overlay"
if [ ! -f "$OUT/vmlinuz-$kver" ] || [ "$force" = --force ] \
   || [ "$(cat "$OUT/modules-$kver/list" 2>/dev/null)" != "$MODS $FSMODS" ]; then
  step "downloading kernel package $kpkg"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download "$kpkg" >/dev/null 2>&1)
  step "extracting kernel and modules"
  dpkg -x "$tmp"/*.deb "$tmp/x"
  cp "$tmp/x/boot/vmlinuz-$kver" "$OUT/vmlinuz-$kver"
  rm -rf "$OUT/modules-$kver"
  mkdir -p "$OUT/modules-$kver"
  for list in "order:$MODS" "fs:$FSMODS"; do
    name=${list%%:*}
    : > "$OUT/modules-$kver/$name"
    for m in ${list#*:}; do
      f=$(find "$tmp/x/lib/modules/$kver" -name "$m.ko*" | head -1)
      [ -n "$f" ] || { echo "images/build.sh: module $m not in $kpkg" >&2; exit 1; }
      cp "$f" "$OUT/modules-$kver/"
      echo "$(basename "$f")" >> "$OUT/modules-$kver/$name"
    done
  done
  echo "$MODS $FSMODS" > "$OUT/modules-$kver/list"
  rm -rf "$tmp"
fi
ln -sf "vmlinuz-$kver" "$OUT/vmlinuz"
# The modules bottle-host names on the kernel command line, in load order.
paste -sd, "$OUT/modules-$kver/order" > "$OUT/modules"
paste -sd, "$OUT/modules-$kver/fs" > "$OUT/modules.fs"

# 2. The static guest init.
step "building static bottle-guest"
bash guest/build-static.sh >&2
guest="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/guest/bottle-guest"

# 3. The initramfs.
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "images/build.sh: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
tools=yes
[ "${BOTTLE_IMAGE_MINIMAL:-0}" = 1 ] && tools=no
stamp=$( { cat "$guest" "$busybox" "$OUT/modules-$kver/order" "$OUT/modules-$kver/fs" images/build.sh images/tools.sh; echo "$tools";
           if [ $tools = yes ]; then for t in curl getent python3; do p=$(PATH=/usr/bin:/bin command -v $t || true); [ -z "$p" ] || sha256sum "$(readlink -f "$p")"; done; fi; if [ -d images/rootfs ]; then find images/rootfs -type f -print0 | sort -z | xargs -0r cat; fi; } | sha256sum | cut -c1-16)
if [ -f "$OUT/initramfs-$stamp.cpio" ] && [ "$force" != --force ]; then
  step "initramfs up to date ($stamp)"
else
  step "assembling initramfs"
  root="$OUT/rootfs.new"
  rm -rf "$root"
  mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,run,tmp,root,usr/bin,usr/sbin,lib/modules/bottle}
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  # Scripts say #!/usr/bin/env; busybox's applets live in /bin.
  ln -s /bin/busybox "$root/usr/bin/env"
  cp "$guest" "$root/sbin/bottle-guest"
  ln -s sbin/bottle-guest "$root/init"
  ln -sf bottle-guest "$root/sbin/init"
  cp "$OUT/modules-$kver"/* "$root/lib/modules/bottle/"
  if [ $tools = yes ]; then
    step "adding real tools from this host (curl, getent, python3; BOTTLE_IMAGE_MINIMAL=1 skips)"
    bash images/tools.sh "$root"
  fi
  if [ -d images/rootfs ]; then cp -a images/rootfs/. "$root/"; fi
  echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
  echo "agent:x:1000:1000:agent:/tmp:/bin/sh" >> "$root/etc/passwd"
  printf 'root:x:0:\nagent:x:1000:\n' > "$root/etc/group"
  # LZ4 (the kernel's legacy format, `-l`): under TCG the kernel unpacks
  # it nearly as fast as a raw cpio (gzip takes twice as long), and it is
  # under half the size. QEMU keeps the whole file mapped for as long as a
  # bottle runs, so the size is host memory (docs/performance.md, "Density").
  command -v lz4 > /dev/null || { echo "images/build.sh: lz4 not found (apt-get install lz4)" >&2; exit 1; }
  rm -f "$OUT"/initramfs-*.cpio "$OUT"/initramfs-*.cpio.gz
  (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) | lz4 -l -9 -q > "$OUT/initramfs-$stamp.cpio"
  # The same tree as a directory, for libkrun (krun_set_root).
  rm -rf "$OUT/rootfs"
  mv "$root" "$OUT/rootfs"
fi
rm -f "$OUT/initramfs.cpio.gz"
ln -sf "initramfs-$stamp.cpio" "$OUT/initramfs.cpio"

# 4. The boot initramfs for bottles whose root is an OCI image or a
# directory (docs/images.md): only bottle-guest and the modules; the init
# mounts the image over virtio-fs and moves into it.
bstamp=$( { cat "$guest" "$OUT/modules-$kver/order" "$OUT/modules-$kver/fs" images/build.sh; } | sha256sum | cut -c1-16)
if [ ! -f "$OUT/initramfs-boot-$bstamp.cpio" ] || [ "$force" = --force ]; then
  step "assembling the boot initramfs (for image roots)"
  root="$OUT/bootfs.new"
  rm -rf "$root"
  mkdir -p "$root"/{sbin,proc,sys,dev,run,tmp,lib/modules/bottle}
  cp "$guest" "$root/sbin/bottle-guest"
  ln -s sbin/bottle-guest "$root/init"
  cp "$OUT/modules-$kver"/*.ko "$root/lib/modules/bottle/"
  rm -f "$OUT"/initramfs-boot-*.cpio
  (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) > "$OUT/initramfs-boot-$bstamp.cpio"
  rm -rf "$root"
fi
ln -sf "initramfs-boot-$bstamp.cpio" "$OUT/initramfs-boot.cpio"
step "kernel:    $OUT/vmlinuz"
step "initramfs: $OUT/initramfs.cpio ($(stat -L -c %s "$OUT/initramfs.cpio") bytes)"
step "rootfs:    $OUT/rootfs (the same tree, for libkrun)"
step "boot:      $OUT/initramfs-boot.cpio ($(stat -L -c %s "$OUT/initramfs-boot.cpio") bytes, for image roots)"
