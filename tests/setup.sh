#!/usr/bin/env bash
# Install what the tests need on a fresh Debian/Ubuntu machine. Idempotent:
# installs only what is missing. Uses sudo when not root.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Debian packages: real DNS clients and servers for end-to-end tests and
# benchmarks, musl-tools for the static guest, QEMU and a kernel for the
# real-VM tests, busybox for minimal guest images, gcc for the fake libkrun
# the libkrun FFI tests build, python3-venv for the Kubernetes manifest
# validator (deploy/kubernetes/validate.sh), ca-certificates for the
# container root filesystem (deploy/container/rootfs.sh), tmux for the
# terminal tests (a real terminal driven from a test), libseccomp-dev and
# libcap-ng-dev to build virtiofsd, umoci to make OCI images in the image
# tests, docker-registry and skopeo for the image pull test
# (host/src/image/tests_registry.rs; the test runs its own registry, so the
# package's service is disabled where systemd runs it), mmdebstrap for the
# Debian agent image (images/agent-image.sh), git for its stand-in git host.
PKGS=(gcc patch libseccomp-dev libcap-ng-dev umoci dnsutils dnsperf dnsmasq-base musl-tools qemu-system-x86 busybox-static cpio lz4 curl python3 python3-venv ca-certificates iproute2 util-linux tmux docker-registry skopeo mmdebstrap git)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust with rustup first (https://rustup.rs)" >&2
  exit 1
fi
rustup component add clippy rustfmt >/dev/null 2>&1 || true
if ! rustup target list --installed | grep -q x86_64-unknown-linux-musl; then
  echo "setup: adding the x86_64-unknown-linux-musl target"
  rustup target add x86_64-unknown-linux-musl
fi

# The vsock daemon QEMU's vhost-user-vsock device talks to (rust-vmm),
# patched to refuse connections nobody serves with a reset.
bash "$(dirname "${BASH_SOURCE[0]}")/../images/vsock-daemon.sh"

# The virtio-fs daemon behind image roots and [[mounts]] workspaces.
bash "$(dirname "${BASH_SOURCE[0]}")/../images/virtiofsd.sh"
