#!/usr/bin/env bash
# Install the virtio-fs daemon QEMU's vhost-user-fs-pci device talks to:
# virtiofsd (the maintained Rust one, from crates.io). Chosen over the C
# one Debian's QEMU 7.2 ships in /usr/lib/qemu/ because it runs without
# root (--sandbox none), offers --readonly and translates uids
# (--translate-uid), so files the agent creates belong to the user who ran
# bottle-host (docs/workspaces.md). Needs libseccomp-dev and libcap-ng-dev
# (tests/setup.sh installs them).
set -euo pipefail

VERSION=1.14.0
SHA256=7051accc9cf2816e25945c8216e6d4be2b4e75fc5e77559cd7eed5e400245cc1

if [ "$(id -u)" -eq 0 ]; then
  DEST=/usr/local
else
  DEST="$HOME/.cargo"
fi

version_of() { [ -x "$1" ] && "$1" --version 2>/dev/null || true; }
case "$(version_of "$DEST/bin/virtiofsd")" in
  *"$VERSION"*) exit 0 ;;
esac

echo "virtiofsd: building virtiofsd $VERSION (about three minutes)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl -sSfL --retry 3 -o "$work/v.crate" \
  "https://static.crates.io/crates/virtiofsd/virtiofsd-$VERSION.crate"
echo "$SHA256  $work/v.crate" | sha256sum -c --quiet
tar xzf "$work/v.crate" -C "$work"
CARGO_TARGET_DIR="$work/target" cargo install --locked --quiet --force \
  --root "$DEST" --path "$work/virtiofsd-$VERSION"
"$DEST/bin/virtiofsd" --version
