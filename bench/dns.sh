#!/usr/bin/env bash
# DNS benchmark: dnsperf against
#   (a) dnsmasq answering allowed.test from its config (the baseline), and
#   (b) our path: dnsperf -> bottle-guest dns-stub (loopback port) -> Unix
#       socket -> bottle-host dns (warm cache; its upstream is the dnsmasq
#       of (a)).
# If `bottle-host dns` is not available in this build, (b) uses
# fake-dns-host (bottle-e2e) instead, which answers from a static zone:
# that measures the guest half only, and the output says so.
#
# Each round: one dnsperf for allowed names (allowed.test A -> NOERROR),
# one for denied names (denied.example A -> NXDOMAIN), against each server,
# DURATION seconds each (default 10), 100 queries outstanding. ROUNDS
# rounds (default 3), alternating which server goes first; the summary
# gives the medians and how many rounds ours won. Loopback only. The host
# writes its audit log (every decision) to a file, as in production.
#
# Besides QPS and latency, it prints the CPU time the servers spent per
# query (dnsmasq; stub + host for ours), from /proc/PID/stat. On a machine
# shared with other work, QPS favours the side with more processes (each
# gets its own share of the CPU); CPU per query does not.
#
# Usage: [ROUNDS=N] bench/dns.sh [DURATION_SECONDS]
# Needs: dnsperf, dnsmasq (dnsmasq-base), python3, cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
PROFILE=${PROFILE:-release}
OUT=target/$PROFILE
[ "$PROFILE" = dev ] && OUT=target/debug

for tool in dnsperf dnsmasq python3; do
    command -v "$tool" >/dev/null || { echo "bench/dns.sh: $tool is not installed" >&2; exit 1; }
done

echo "==> building ($PROFILE)"
cargo build --profile "$PROFILE" -p bottle-guest -p bottle-host -p bottle-e2e --bins

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A port free for both UDP and TCP on 127.0.0.1.
free_port() {
    python3 - <<'PY'
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        t.close(); u.close()
PY
}

# Wait until FILE contains PATTERN (at most 10 s).
wait_for() {
    local file=$1 pattern=$2
    for _ in $(seq 100); do
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench/dns.sh: no '$pattern' in $file:" >&2
    cat "$file" >&2
    return 1
}

printf 'allowed.test A\n' >"$WORK/allowed.txt"
printf 'denied.example A\n' >"$WORK/denied.txt"

# CPU ticks (user + system) used so far by the processes PIDS...
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do
        # Fields after the ")" of the command name: utime is the 12th, stime the 13th.
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)

# run_dnsperf PORT QUERYFILE PIDS... -> "qps avg_ms p99_ms cpu_us_per_query rcodes"
run_dnsperf() {
    local port=$1 file=$2 log="$WORK/dnsperf.$RANDOM"
    shift 2
    local t0 t1
    t0=$(cpu_ticks "$@")
    dnsperf -s 127.0.0.1 -p "$port" -d "$file" -l "$DURATION" -q 100 -v >"$log" 2>&1 || true
    t1=$(cpu_ticks "$@")
    local qps avg p99 codes done cpu
    qps=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$log")
    avg=$(awk '/Average Latency \(s\):/ {printf "%.3f", $4 * 1000}' "$log")
    p99=$(grep '^> ' "$log" | awk '{print $NF}' | sort -n |
        awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.3f", a[i]*1000}')
    codes=$(awk -F'Response codes: *' '/Response codes:/ {print $2}' "$log" | tr -d ' ')
    done=$(awk '/Queries completed:/ {print $3}' "$log")
    cpu=$(python3 -c "d=int('${done:-0}' or 0); print(f'{($t1-$t0)*1e6/$HZ/d:.2f}' if d else 'nan')")
    echo "${qps:-0} ${avg:-nan} ${p99:-nan} $cpu ${codes:-none}"
    rm -f "$log"
}

# --- (a) dnsmasq
DM_PORT=$(free_port)
dnsmasq --no-daemon --port "$DM_PORT" --address=/allowed.test/203.0.113.7 \
    --address=/denied.example/ --no-resolv --no-hosts \
    --listen-address=127.0.0.1 --bind-interfaces >"$WORK/dnsmasq.log" 2>&1 &
DM_PID=$!
PIDS+=($DM_PID)
wait_for "$WORK/dnsmasq.log" "started"

# --- (b) our path
SOCK="$WORK/host.sock_6002"
cat >"$WORK/bottle.toml" <<TOML
[agent]
command = ["/bin/true"]

[dns]
upstreams = ["127.0.0.1:$DM_PORT"]
extra_names = ["allowed.test"]
TOML
HOST_KIND="bottle-host dns (real host, warm cache)"
"$OUT/bottle-host" dns --listen "unix://$SOCK" --manifest "$WORK/bottle.toml" \
    --upstream "127.0.0.1:$DM_PORT" --audit-log "$WORK/audit.jsonl" >"$WORK/host.log" 2>&1 &
HOST_PID=$!
PIDS+=($HOST_PID)
if ! wait_for "$WORK/host.log" "dns: serving on" 2>/dev/null; then
    echo "note: bottle-host dns is not available in this build:"
    sed 's/^/  /' "$WORK/host.log"
    echo "      measuring the guest half with fake-dns-host instead"
    HOST_KIND="fake-dns-host (static zone; guest half only, NOT the real host)"
    "$OUT/fake-dns-host" "unix://$SOCK" >"$WORK/host.log" 2>&1 &
    HOST_PID=$!
    PIDS+=($HOST_PID)
    wait_for "$WORK/host.log" "serving on"
fi
STUB_PORT=$(free_port)
"$OUT/bottle-guest" dns-stub --host "unix://$SOCK" --listen "127.0.0.1:$STUB_PORT" \
    >"$WORK/stub.log" 2>&1 &
STUB_PID=$!
PIDS+=($STUB_PID)
wait_for "$WORK/stub.log" "dns-stub: listening on"

# Warm both caches.
for port in "$DM_PORT" "$STUB_PORT"; do
    dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/allowed.txt" -l 1 >/dev/null 2>&1 || true
    dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/denied.txt" -l 1 >/dev/null 2>&1 || true
done

echo "==> $(nproc) cores, ${DURATION}s per run, 100 outstanding, UDP, $ROUNDS rounds"
echo "    ours = dnsperf -> bottle-guest dns-stub -> unix socket -> $HOST_KIND"
printf '%-5s %-8s %-10s %10s %10s %10s %10s  %s\n' round names server QPS avg_ms p99_ms cpu_us/q rcodes
RESULTS="$WORK/results"
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    # Alternate who goes first, so a change in the machine's other load
    # during a round does not always favour the same side.
    order="dnsmasq ours"
    [ $((round % 2)) = 0 ] && order="ours dnsmasq"
    for names in allowed denied; do
        for server in $order; do
            if [ "$server" = ours ]; then
                res=$(run_dnsperf "$STUB_PORT" "$WORK/$names.txt" "$STUB_PID" "$HOST_PID")
            else
                res=$(run_dnsperf "$DM_PORT" "$WORK/$names.txt" "$DM_PID")
            fi
            echo "$names $server $res" >>"$RESULTS"
            read -r qps avg p99 cpu codes <<<"$res"
            printf '%-5s %-8s %-10s %10s %10s %10s %10s  %s\n' "$round" "$names" "$server" "$qps" "$avg" "$p99" "$cpu" "$codes"
        done
    done
done
echo "==> medians over $ROUNDS rounds; ratios ours / dnsmasq: QPS (want >= 1.0), avg and p99 latency and CPU per query (want <= 1.0)"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    names, server, *vals = line.split()
    nums = []
    for v in vals[:4]:
        try:
            nums.append(float(v))
        except ValueError:
            nums.append(float("nan"))
    rows.setdefault((names, server), []).append(nums)
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in rows.items()}
r = lambda a, b: f"{b / a:.2f}x" if a else "n/a"
for names in ("allowed", "denied"):
    d, o = med.get((names, "dnsmasq")), med.get((names, "ours"))
    if not d or not o:
        continue
    wins = sum(1 for a, b in zip(rows[(names, "dnsmasq")], rows[(names, "ours")]) if b[0] >= a[0])
    print(f"{names}: QPS {d[0]:.0f} vs {o[0]:.0f} = {r(d[0], o[0])}  avg {r(d[1], o[1])}  "
          f"p99 {r(d[2], o[2])}  cpu/query {d[3]:.2f} vs {o[3]:.2f} us = {r(d[3], o[3])}  "
          f"(ours >= dnsmasq in {wins} of {len(rows[(names, 'ours')])} rounds)")
PY
sleep 0.3  # the audit flush interval is 100 ms
echo "==> audit log: $(wc -l <"$WORK/audit.jsonl" 2>/dev/null || echo 0) decisions recorded"
