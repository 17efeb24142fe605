#!/usr/bin/env bash
# The session path (launch/exec streams) against a raw vsock stream in one
# real VM: keystroke echo round trip (goal: adds <= 1 ms) and pipe
# throughput host -> guest -> host (goal: >= 0.8x raw), alternating rounds,
# medians, CPU per key. See tests/src/bin/session-bench.rs.
#
# Usage: sudo bash bench/session.sh
# Needs root (as the real-VM tests do), QEMU, the vsock daemon and the
# guest image: bash tests/setup.sh && bash images/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
echo "==> building ($PROFILE)"
cargo build --profile "$PROFILE" -p bottle-host -p bottle-e2e --bin bottle-host --bin session-bench
OUT=${CARGO_TARGET_DIR:-target}/$PROFILE
[ "$PROFILE" = dev ] && OUT=${CARGO_TARGET_DIR:-target}/debug
echo "==> load before: $(cut -d' ' -f1-3 /proc/loadavg)"
BOTTLE_BIN_DIR="$OUT" BOTTLE_IMAGE_DIR="${BOTTLE_IMAGE_DIR:-$PWD/.bottle/image}" "$OUT/session-bench"
echo "==> load after: $(cut -d' ' -f1-3 /proc/loadavg)"
