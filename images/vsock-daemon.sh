#!/usr/bin/env bash
# Install the vsock daemon QEMU's vhost-user-vsock device talks to:
# vhost-device-vsock (rust-vmm) 0.3.0 from crates.io, built with our patch
# images/patches/vhost-device-vsock-0.3.0-rst.patch. Unpatched, 0.3.0 drops
# a guest's connection request to a port nobody serves (and packets for
# unknown CIDs) without an answer, so the guest waits out its 2 s connect
# timeout; patched, it answers with a vsock reset and the guest sees
# ECONNRESET at once (docs/vmm-qemu.md). The patched build calls itself
# 0.3.0+bottle-rst.1, which is how this script knows it is installed.
set -euo pipefail

VERSION=0.3.0
SHA256=52ce95d81af89ad693d067c650e42df0f217addfbc96cc4820f7c62eb4a28b13
WANT="$VERSION+bottle-rst.1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PATCH="$ROOT/images/patches/vhost-device-vsock-$VERSION-rst.patch"

# As root it goes to /usr/local/bin, so every user on the machine can run
# bottles (docs/security.md: bottle-host needs no root); otherwise to
# ~/.cargo/bin.
if [ "$(id -u)" -eq 0 ]; then
  DEST=/usr/local
else
  DEST="$HOME/.cargo"
fi

version_of() { [ -x "$1" ] && "$1" --version 2>/dev/null || true; }
case "$(version_of "$DEST/bin/vhost-device-vsock")" in
  *"$WANT"*) exit 0 ;;
esac
# Built by an earlier version of this script into ~/.cargo/bin: reuse it.
if [ "$DEST" != "$HOME/.cargo" ]; then
  case "$(version_of "$HOME/.cargo/bin/vhost-device-vsock")" in
    *"$WANT"*)
      install -m 0755 "$HOME/.cargo/bin/vhost-device-vsock" "$DEST/bin/vhost-device-vsock"
      echo "vsock-daemon: installed $WANT in $DEST/bin"
      exit 0
      ;;
  esac
fi

echo "vsock-daemon: building vhost-device-vsock $WANT (about three minutes)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl -sSfL --retry 3 -o "$work/vdv.crate" \
  "https://static.crates.io/crates/vhost-device-vsock/vhost-device-vsock-$VERSION.crate"
echo "$SHA256  $work/vdv.crate" | sha256sum -c --quiet
tar xzf "$work/vdv.crate" -C "$work"
patch --quiet -d "$work/vhost-device-vsock-$VERSION" -p1 <"$PATCH"
# Its own target directory: not the workspace's, whatever CARGO_TARGET_DIR says.
CARGO_TARGET_DIR="$work/target" cargo install --locked --quiet --force \
  --root "$DEST" --path "$work/vhost-device-vsock-$VERSION"
"$DEST/bin/vhost-device-vsock" --version
