#!/usr/bin/env bash
# Every test of bot-bottle, in order: formatting, lints, unit and
# integration tests, and the static guest build. The README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "static guest build"
bash guest/build-static.sh

step "guest image (kernel, initramfs with bottle-guest as /init; cached)"
bash images/build.sh

step "cargo build (binaries used by end-to-end tests)"
cargo build --workspace --all-features

step "cargo test"
cargo test --workspace --all-features 2>&1 | tee "${CARGO_TARGET_DIR:-target}/test-output.txt"

step "fuzz (${FUZZ_SECONDS:-10}s per target)"
bash fuzz/run.sh "${FUZZ_SECONDS:-10}"
