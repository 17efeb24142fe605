#!/usr/bin/env bash
# Load benchmark, release build, loopback only:
#   (a) DNS_QUERIES (default 10000) UDP queries sent at the same instant,
#       each from its own socket: dns-stub (127.0.0.1) -> Unix socket ->
#       bottle-host dns -> a test upstream on 127.0.0.1
#       (tests/tests/dns_load.rs);
#   (b) PROXY_CONNS (default 1000) HTTPS connections at once through
#       bottle-host proxy (CONNECT, TLS with the proxy's CA, one GET) to a
#       local HTTPS upstream with its own CA (host/tests/proxy_load.rs;
#       needs root for a private /etc/hosts).
# Each prints errors, latency p50/p99/max and peak RSS (VmHWM); the same
# tests run smaller (1000 / 200) in the default test run.
#
# Usage: bench/load.sh [DNS_QUERIES] [PROXY_CONNS]
set -euo pipefail
cd "$(dirname "$0")/.."

DNS_QUERIES=${1:-10000}
PROXY_CONNS=${2:-1000}
TARGET=${CARGO_TARGET_DIR:-target}

echo "==> building (release)"
cargo build --release -p bottle-host -p bottle-guest

BIN_DIR=$(cd "$TARGET/release" && pwd)

echo "==> DNS: $DNS_QUERIES concurrent queries"
BOTTLE_BIN_DIR="$BIN_DIR" BOTTLE_LOAD_DNS=$DNS_QUERIES \
    cargo test --release -p bottle-e2e --test dns_load -- --nocapture 2>&1 |
    grep -E '^dns load|panicked|test result' || true

echo "==> proxy: $PROXY_CONNS concurrent HTTPS connections"
BOTTLE_LOAD_PROXY=$PROXY_CONNS \
    cargo test --release -p bottle-host --test proxy_load -- --nocapture 2>&1 |
    grep -E '^proxy load:|skipped|panicked|test result' || true
