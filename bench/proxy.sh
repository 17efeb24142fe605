#!/usr/bin/env bash
# Egress proxy benchmark, one run on one machine, loopback only:
#   a local HTTPS server (nginx, a 3-byte response, its own test CA made
#   here with openssl), loaded by https-load (bottle-e2e's load generator:
#   N connections sending GETs back to back) in two modes,
#     keep-alive:  32 connections, many requests each
#     new-conn:    32 workers, a new TCP (+ CONNECT) + TLS connection per request
#   against
#     (a) nginx directly,
#     (b) nginx through `bottle-host proxy` (DLP on: built-in rules plus a
#         host secret; audit log written; allow_private for loopback),
#     (c) nginx through mitmdump.
# Prints requests/s, p50/p99 latency, CPU time per request of each process
# (load generator, nginx, the proxy: on a shared machine the cheapest
# path wins) and the ratios to the targets (keep-alive >= 0.8x direct,
# new-conn >= 0.7x direct, >= 30x mitmdump).
#
# Usage: bench/proxy.sh [DURATION_SECONDS]   (default 10 per run)
# Installs what it needs when missing: nginx (apt), mitmproxy (pip).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10}
CONNS=${CONNS:-32}
PROFILE=${PROFILE:-release}
OUT=${CARGO_TARGET_DIR:-target}/$PROFILE
[ "$PROFILE" = dev ] && OUT=${CARGO_TARGET_DIR:-target}/debug

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    echo "==> installing nginx"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nginx-light
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if ! command -v mitmdump >/dev/null; then
    echo "==> installing mitmproxy"
    python3 -m pip install -q mitmproxy
fi
for tool in openssl python3 mitmdump; do
    command -v "$tool" >/dev/null || { echo "bench/proxy.sh: $tool is not installed" >&2; exit 1; }
done

echo "==> building ($PROFILE)"
cargo build --profile "$PROFILE" -p bottle-host -p bottle-e2e --bin bottle-host --bin https-load

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Wait until a TCP port accepts (at most 20 s).
wait_port() {
    for _ in $(seq 200); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench/proxy.sh: nothing listening on $1" >&2
    exit 1
}

# --- test CA and nginx ----------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench test CA" \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$WORK/leaf.key" -out "$WORK/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/leaf.ext" -out "$WORK/leaf.pem" 2>/dev/null

NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        server_name localhost;
        ssl_certificate $WORK/leaf.pem;
        ssl_certificate_key $WORK/leaf.key;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
NGINX_PID=$!
wait_port "$NGINX_PORT"
URL="https://localhost:$NGINX_PORT/"

# --- our proxy ------------------------------------------------------------
OURS_PORT=$(free_port)
cat >"$WORK/bottle.toml" <<EOF
[agent]
command = ["true"]

[secrets]
bench = { env = "BENCH_SECRET" }

[egress]
allow_private = true

[[egress.routes]]
host = "localhost"
ports = [$NGINX_PORT]
EOF
"$OUT/bottle-host" ca --export "$WORK/ours-ca.pem" --state-dir "$WORK/state" >/dev/null
BENCH_SECRET="bench-secret-value-0123456789" RUST_LOG=warn \
    "$OUT/bottle-host" proxy --listen "tcp://127.0.0.1:$OURS_PORT" --manifest "$WORK/bottle.toml" \
    --upstream-ca "$WORK/ca.pem" --state-dir "$WORK/state" --audit-log "$WORK/audit.jsonl" \
    2>"$WORK/ours.log" &
PIDS+=($!)
OURS_PID=$!
wait_port "$OURS_PORT"

# --- mitmdump -------------------------------------------------------------
MITM_PORT=$(free_port)
mitmdump -q --listen-host 127.0.0.1 -p "$MITM_PORT" --set confdir="$WORK/mitm" \
    --set ssl_verify_upstream_trusted_ca="$WORK/ca.pem" >"$WORK/mitm.log" 2>&1 &
PIDS+=($!)
MITM_PID=$!
wait_port "$MITM_PORT"
for _ in $(seq 100); do [ -f "$WORK/mitm/mitmproxy-ca-cert.pem" ] && break; sleep 0.1; done

# --- runs -----------------------------------------------------------------
declare -A RPS
# CPU ticks (user + system) used so far by a process and its children
# (nginx: its worker).
ticks() {
    local t=0 p
    for p in "$@" $(pgrep -P "$1" || true); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
HZ=$(getconf CLK_TCK)
run() { # name mode cacert [proxy proxy_pid]
    local name=$1 mode=$2 ca=$3 proxy=${4:-} ppid=${5:-}
    local args=("$URL" --cacert "$ca" -c "$CONNS" -d "$DURATION")
    [ -n "$proxy" ] && args+=(--proxy "$proxy")
    [ "$mode" = new-conn ] && args+=(--new-conn)
    local line n0 n1 p0=0 p1=0
    n0=$(ticks "$NGINX_PID")
    [ -n "$ppid" ] && p0=$(ticks "$ppid")
    line=$("$OUT/https-load" "${args[@]}")
    n1=$(ticks "$NGINX_PID")
    [ -n "$ppid" ] && p1=$(ticks "$ppid")
    local req
    req=$(sed -n 's/^requests=\([0-9]*\).*/\1/p' <<<"$line")
    local cpu; req=${req:-0}
    cpu=$(python3 -c "r=max($req,1); print(f'nginx_us={($n1-$n0)*1e6/$HZ/r:.0f} proxy_us={($p1-$p0)*1e6/$HZ/r:.0f}')")
    printf '%-10s %-8s %s %s\n' "$mode" "$name" "$line" "$cpu"
    RPS[$name.$mode]=$(sed -n 's/.*rps=\([0-9]*\).*/\1/p' <<<"$line")
}

echo "==> $CONNS connections, ${DURATION}s per run, nginx on $URL, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "    (cpu_us: load generator's CPU per request; nginx_us, proxy_us: the servers')"
for mode in keep-alive new-conn; do
    run direct "$mode" "$WORK/ca.pem"
    run ours "$mode" "$WORK/ours-ca.pem" "127.0.0.1:$OURS_PORT" "$OURS_PID"
    run mitmdump "$mode" "$WORK/mitm/mitmproxy-ca-cert.pem" "127.0.0.1:$MITM_PORT" "$MITM_PID"
done

echo "==> ratios"
ratio() { python3 -c "a,b=$1,$2; print(f'{a/b:.2f}' if b else 'n/a')"; }
for mode in keep-alive new-conn; do
    want=0.8; [ "$mode" = new-conn ] && want=0.7
    printf '%-10s ours/direct = %s (target >= %s)   ours/mitmdump = %s (target >= 30)\n' "$mode" \
        "$(ratio "${RPS[ours.$mode]}" "${RPS[direct.$mode]}")" "$want" \
        "$(ratio "${RPS[ours.$mode]}" "${RPS[mitmdump.$mode]}")"
done
echo "==> audit lines written by our proxy: $(wc -l <"$WORK/audit.jsonl")"
