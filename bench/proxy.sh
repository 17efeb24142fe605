#!/usr/bin/env bash
# Egress proxy benchmark: one run on one machine, loopback only, every
# path under the same load, side by side.
#
# Load: https-load (bottle-e2e's load generator, tests/src/bin/https-load.rs)
# against a local nginx (a 3-byte response, its own openssl test CA), in
# two modes:
#   keep-alive:  CONNS (32) connections, many requests each
#   new-conn:    CONNS workers, a new connection (TCP or egress socket,
#                CONNECT, TLS) per request
# Paths (columns):
#   direct      nginx itself (reference)
#   hudsucker   hudsucker's own no-op MITM (tests/src/bin/hudsucker-noop.rs:
#               the same hudsucker and ring, no policy, no DLP, no audit)
#   ours        `bottle-host proxy` on TCP, every guard on: allowlist with
#               method/path rules, DLP with host secrets, a route injecting
#               a credential, response redaction, audit log
#   ours-unix   the same on the egress channel's Unix socket, as under
#               `bottle-host launch` (hello, then served directly)
#   squid       Squid (squid-openssl) bumping every CONNECT, allowlist ACL
#   mitmdump    mitmproxy's mitmdump, defaults
# ROUNDS rounds (default 3), the order of the paths reversed every other
# round (as bench/dns.sh alternates); the summary gives medians. Besides
# requests/s and p50/p99 latency it prints CPU time (user + system) per
# completed request of the load generator (getrusage), nginx and the proxy
# (/proc/PID/stat, children included): on a shared machine requests/s
# favours whatever gets more of the CPU; CPU per request is steadier.
# resumed% is the share of requests whose connection resumed a TLS
# session (https-load keeps every ticket, as a long-lived client does;
# with a new connection per request, a proxy that gives no tickets pays
# a full handshake each time, and so does the client).
#
# Targets (ratios in the same run): ours >= 1.0x hudsucker's requests/s
# and <= 1.0x its proxy CPU per request; ours >= 1.2x squid; ours >= 30x
# mitmdump (both modes); ours-unix <= 1.05x ours in proxy CPU per request.
#
# Usage: [ROUNDS=3] [CONNS=32] [PATHS="direct ours ..."] [PROFILE=release]
#        [MODES="keep-alive new-conn"] [TICKETS=256 (0: no resumption;
#        8: rustls's default client store)] [OURS_THREADS=N (ours' tokio
#        worker threads; default one per CPU)]
#        bench/proxy.sh [DURATION_SECONDS]   (default 10 per run)
# Installs what it needs when missing: nginx-light, squid-openssl (apt),
# mitmproxy (pip). Runs squid as the `proxy` user (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-keep-alive new-conn}
CONNS=${CONNS:-32}
TICKETS=${TICKETS:-256}
PATHS=${PATHS:-direct hudsucker ours ours-unix squid mitmdump}
PROFILE=${PROFILE:-release}
OUT=${CARGO_TARGET_DIR:-target}/$PROFILE
[ "$PROFILE" = dev ] && OUT=${CARGO_TARGET_DIR:-target}/debug
SQUID_CERTGEN=/usr/lib/squid/security_file_certgen
has() { [[ " $PATHS " == *" $1 "* ]]; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_missing+=(nginx-light)
if has squid && { ! command -v squid >/dev/null || [ ! -x "$SQUID_CERTGEN" ]; }; then
    apt_missing+=(squid-openssl)
fi
if [ ${#apt_missing[@]} -gt 0 ]; then
    echo "==> installing ${apt_missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if has mitmdump && ! command -v mitmdump >/dev/null; then
    echo "==> installing mitmproxy"
    python3 -m pip install -q mitmproxy
fi
for tool in openssl python3; do
    command -v "$tool" >/dev/null || { echo "bench/proxy.sh: $tool is not installed" >&2; exit 1; }
done

echo "==> building ($PROFILE)"
cargo build --profile "$PROFILE" -p bottle-host -p bottle-e2e \
    --bin bottle-host --bin https-load --bin hudsucker-noop

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=bench/proxy-peers.sh
. bench/proxy-peers.sh

start_nginx
has ours || has ours-unix && start_ours
has hudsucker && start_hudsucker
has squid && start_squid
has mitmdump && start_mitmdump

# CPU ticks (user + system) used so far by processes and their children
# (nginx: its worker; squid: its certificate helpers).
ticks() {
    local t=0 p
    for p in "$@" $(pgrep -P "$1" || true); do
        # Fields after the ")" of the command name: utime is the 12th, stime the 13th.
        t=$((t + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
    done
    echo "$t"
}
HZ=$(getconf CLK_TCK)

# https-load's arguments and the proxy's pid for a path.
load_args() { # name
    case $1 in
        direct) ARGS=(--cacert "$WORK/ca.pem"); PPID_=() ;;
        ours) ARGS=(--cacert "$WORK/ours-ca.pem" --proxy "127.0.0.1:$OURS_PORT"); PPID_=("$OURS_PID") ;;
        ours-unix) ARGS=(--cacert "$WORK/ours-ca.pem" --unix "$OURS_SOCK"); PPID_=("$OURS_UNIX_PID") ;;
        hudsucker) ARGS=(--cacert "$WORK/hudsucker-ca.pem" --proxy "127.0.0.1:$HUDSUCKER_PORT")
            PPID_=("$HUDSUCKER_PID") ;;
        squid) ARGS=(--cacert "$WORK/squid/ca.pem" --proxy "127.0.0.1:$SQUID_PORT"); PPID_=("$SQUID_PID") ;;
        mitmdump) ARGS=(--cacert "$WORK/mitm/mitmproxy-ca-cert.pem" --proxy "127.0.0.1:$MITMDUMP_PORT")
            PPID_=("$MITMDUMP_PID") ;;
        *) echo "bench/proxy.sh: unknown path $1" >&2; exit 1 ;;
    esac
}

RESULTS="$WORK/results"
: >"$RESULTS"
run() { # round mode name
    local round=$1 mode=$2 name=$3 line n0 n1 p0=0 p1=0
    load_args "$name"
    [ "$mode" = new-conn ] && ARGS+=(--new-conn)
    n0=$(ticks "$NGINX_PID")
    [ ${#PPID_[@]} -gt 0 ] && p0=$(ticks "${PPID_[0]}")
    line=$("$OUT/https-load" "$URL" -c "$CONNS" -d "$DURATION" --tickets "$TICKETS" "${ARGS[@]}")
    n1=$(ticks "$NGINX_PID")
    [ ${#PPID_[@]} -gt 0 ] && p1=$(ticks "${PPID_[0]}")
    # round mode name requests errors rps p50 p99 client_us nginx_us proxy_us resumed_pct
    python3 - "$round" "$mode" "$name" "$line" $((n1 - n0)) $((p1 - p0)) "$HZ" "${#PPID_[@]}" <<'PY' |
import sys
rnd, mode, name, line, dn, dp, hz, proxied = sys.argv[1:]
kv = dict(f.split("=", 1) for f in line.split())
req = max(int(kv.get("requests", 0)), 1)
us = lambda ticks: int(ticks) * 1e6 / int(hz) / req
proxy = f"{us(dp):.0f}" if proxied != "0" else "-"
print(rnd, mode, name, kv["requests"], kv["errors"], kv["rps"], kv["p50_ms"], kv["p99_ms"],
      kv["cpu_us"], f"{us(dn):.0f}", proxy, f"{100 * int(kv.get('resumed', 0)) / req:.0f}")
PY
        tee -a "$RESULTS" | awk '{printf "%-5s %-10s %-10s %8s %6s %8s %8s %8s %9s %8s %8s %8s\n", $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12}'
}

# Warm up every proxy (leaf certificates, TLS session caches, pools).
for name in $PATHS; do
    [ "$name" = direct ] && continue
    load_args "$name"
    "$OUT/https-load" "$URL" -c 4 -d 1 "${ARGS[@]}" >/dev/null
done

echo "==> $(nproc) cores, $CONNS connections, ${DURATION}s per run, $ROUNDS rounds, nginx on $URL"
echo "    load at start: $(uptime)"
printf '%-5s %-10s %-10s %8s %6s %8s %8s %8s %9s %8s %8s %8s\n' round mode path requests errors \
    req/s p50_ms p99_ms client_us nginx_us proxy_us resumed%
for round in $(seq "$ROUNDS"); do
    order=$PATHS
    # shellcheck disable=SC2086
    [ $((round % 2)) = 0 ] && order=$(printf '%s\n' $PATHS | tac | xargs)
    for mode in $MODES; do
        for name in $order; do
            run "$round" "$mode" "$name"
        done
    done
done
echo "    load at end: $(uptime)"

echo "==> medians over $ROUNDS rounds (CPU: microseconds per completed request)"
python3 bench/proxy_summary.py "$RESULTS"
for listen in tcp unix; do
    if [ -f "$WORK/audit-$listen.jsonl" ]; then
        echo "==> audit lines written by ours ($listen): $(wc -l <"$WORK/audit-$listen.jsonl")"
    fi
done
if has squid; then
    echo "==> squid access log lines: $(wc -l <"$WORK/squid/access.log")"
fi
