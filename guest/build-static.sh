#!/usr/bin/env bash
# Build bottle-guest as a static musl binary with the size-optimised
# `guest` profile, and fail if the result is not static.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p bottle-guest --profile guest --target x86_64-unknown-linux-musl
bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/guest/bottle-guest"
# A static binary has no program interpreter (PT_INTERP) and no NEEDED
# shared libraries.
if readelf -lW "$bin" | grep -q 'INTERP' || readelf -dW "$bin" | grep -q '(NEEDED)'; then
  echo "error: $bin is dynamically linked:" >&2
  readelf -dW "$bin" | grep NEEDED >&2 || true
  exit 1
fi
size=$(stat -c %s "$bin")
echo "static guest: $bin ($size bytes)"
