#!/usr/bin/env bash
# What a bottle costs the host: N bottles (default 8) launched one after
# another by one user in real VMs (QEMU; TCG here), each with MEMORY_MIB of
# guest RAM (default 256). Prints each bottle's launch-to-agent time (the
# k-th against the first: goal <= 1.5x) and its host memory beyond guest
# RAM as PSS (bottle-host + QEMU without its guest-RAM mapping + the vsock
# daemon), idle and at the peak of a DNS + HTTPS load its agent makes
# (ROUNDS lookups and requests; goal <= 64 MiB), by process.
#
# Usage: sudo bash bench/density.sh            (BOTTLES=8 MEMORY_MIB=256 ROUNDS=20)
# Needs root (as the real-VM tests do), QEMU, the vsock daemon and the
# guest image: bash tests/setup.sh && bash images/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
echo "==> building ($PROFILE)"
cargo build --profile "$PROFILE" -p bottle-host -p bottle-e2e --bin bottle-host --bin density
OUT=${CARGO_TARGET_DIR:-target}/$PROFILE
[ "$PROFILE" = dev ] && OUT=${CARGO_TARGET_DIR:-target}/debug
echo "==> load before: $(cut -d' ' -f1-3 /proc/loadavg)"
BOTTLE_BIN_DIR="$OUT" "$OUT/density"
echo "==> load after: $(cut -d' ' -f1-3 /proc/loadavg)"
