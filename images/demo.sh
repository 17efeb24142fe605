#!/usr/bin/env bash
# The two-minute demo (the README's first command): boot the demo bottle
# in a real VM and watch its agent reach an allowed HTTPS site while DNS
# tunnels, denied names, stray connections and leaked secrets are stopped.
#
# Steps: install what is missing (tests/setup.sh), build bottle-host, the
# static bottle-guest and the guest image (cached), start the testbed (the
# stand-in internet on 127.0.0.1: a DNS zone and an HTTPS site with its own
# CA), then `bottle-host launch examples/demo.toml`. The exit code is the
# demo agent's: 0 when every check behaved.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n[demo] %s\n' "$*" >&2; }

say "1/5 installing what is missing (QEMU, vhost-device-vsock, musl target, ...)"
bash tests/setup.sh
say "2/5 building bottle-host and the testbed"
cargo build -q -p bottle-host -p bottle-e2e --bins
say "3/5 building the guest image (cached after the first run)"
bash images/build.sh

work=$(mktemp -d)
testbed_pid=""
cleanup() {
  [ -n "$testbed_pid" ] && kill "$testbed_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The token the proxy injects; the agent inside only ever sends a placeholder.
BOTTLE_DEMO_TOKEN="demo-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
export BOTTLE_DEMO_TOKEN

say "4/5 starting the testbed: DNS on 127.0.0.1:5354, https://demo.bottle.test:8443"
target/debug/bottle-testbed --dns 127.0.0.1:5354 --https 127.0.0.1:8443 \
  --ca-out "$work/testbed-ca.pem" > "$work/testbed.log" 2>&1 &
testbed_pid=$!
for _ in $(seq 100); do
  grep -q "testbed ready" "$work/testbed.log" 2>/dev/null && break
  kill -0 "$testbed_pid" 2>/dev/null || { cat "$work/testbed.log" >&2; exit 1; }
  sleep 0.1
done

say "5/5 launching the bottle (QEMU; TCG when KVM is not usable)"
target/debug/bottle-host check examples/demo.toml
set +e
target/debug/bottle-host launch examples/demo.toml \
  --state-dir "$work/state" --upstream-ca "$work/testbed-ca.pem"
code=$?
set -e
say "the agent's exit code: $code (audit logs were in $work/state, now removed)"
exit $code
