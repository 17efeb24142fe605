#!/usr/bin/env bash
# Launch the demo bottle (examples/demo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo build -q -p bottle-host
target/debug/bottle-host check examples/demo.toml
exec target/debug/bottle-host launch examples/demo.toml
