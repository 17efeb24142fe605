# shellcheck shell=bash disable=SC2034  # the variables set here are the caller's
# Sourced by bench/proxy.sh: starts the servers it measures, each a child
# of the script with its own files in $WORK, listening on 127.0.0.1 only.
# Every start_* sets NAME_PID (the process whose CPU is counted, with its
# children) and, for proxies, the address https-load is given and the CA
# its leaves chain to.

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

# Wait until a file exists (at most 20 s).
wait_file() {
    for _ in $(seq 200); do
        [ -e "$1" ] && return 0
        sleep 0.1
    done
    echo "bench/proxy.sh: $1 never appeared" >&2
    exit 1
}

# The upstream's test CA ($WORK/ca.pem) and nginx: one worker,
# `return 200 "ok\n"`, an RSA-2048 leaf for localhost.
start_nginx() {
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
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_port "$NGINX_PORT"
    URL="https://localhost:$NGINX_PORT/"
}

# `bottle-host proxy` with every guard on: the allowlist (the bench route
# among others, with method and path rules), DLP with two host secrets,
# the bench route injecting one of them, response redaction (on whenever
# [secrets] has values) and the audit log. Two processes with the same
# manifest and CA: one on TCP, one on the egress channel's Unix socket
# (hello, then served directly, as under `bottle-host launch`).
start_ours() {
    cat >"$WORK/bottle.toml" <<EOF
[agent]
command = ["true"]

[secrets]
bench = { env = "BENCH_SECRET" }
api = { env = "BENCH_API_KEY" }

[egress]
allow_private = true

[[egress.routes]]
host = "api.example.com"
methods = ["POST"]
paths = ["/v1/"]

[[egress.routes]]
host = "*.github.com"

[[egress.routes]]
host = "pypi.org"
methods = ["GET", "HEAD"]

[[egress.routes]]
host = "localhost"
ports = [$NGINX_PORT]
methods = ["GET", "HEAD"]
paths = ["/"]
inject = { header = "authorization", secret = "api", format = "Bearer {secret}" }
EOF
    "$OUT/bottle-host" ca --export "$WORK/ours-ca.pem" --state-dir "$WORK/state" >/dev/null
    local listen pid addr
    for listen in tcp unix; do
        if [ "$listen" = tcp ]; then
            OURS_PORT=$(free_port)
            addr="tcp://127.0.0.1:$OURS_PORT"
        else
            OURS_SOCK="$WORK/egress.sock_6003"
            addr="unix://$OURS_SOCK"
        fi
        BENCH_SECRET="bench-secret-value-0123456789" BENCH_API_KEY="sk-bench-api-key-abcdefghijklmnop" \
            RUST_LOG=warn "$OUT/bottle-host" proxy --listen "$addr" --manifest "$WORK/bottle.toml" \
            --upstream-ca "$WORK/ca.pem" --state-dir "$WORK/state" \
            --audit-log "$WORK/audit-$listen.jsonl" ${OURS_THREADS:+--threads "$OURS_THREADS"} \
            2>"$WORK/ours-$listen.log" &
        pid=$!
        PIDS+=("$pid")
        if [ "$listen" = tcp ]; then
            OURS_PID=$pid
            wait_port "$OURS_PORT"
        else
            OURS_UNIX_PID=$pid
            wait_file "$OURS_SOCK"
        fi
    done
}

# hudsucker's own no-op MITM (tests/src/bin/hudsucker-noop.rs).
start_hudsucker() {
    HUDSUCKER_PORT=$(free_port)
    "$OUT/hudsucker-noop" --listen "127.0.0.1:$HUDSUCKER_PORT" --upstream-ca "$WORK/ca.pem" \
        --ca-out "$WORK/hudsucker-ca.pem" 2>"$WORK/hudsucker.log" &
    HUDSUCKER_PID=$!
    PIDS+=("$HUDSUCKER_PID")
    wait_port "$HUDSUCKER_PORT"
}

# Squid (squid-openssl) bumping every CONNECT: its own ECDSA P-256 CA made
# here, an allowlist of the nginx host and port, cache off, logs in $WORK,
# nginx's test CA trusted upstream. Squid drops root for the `proxy` user,
# so its directory is that user's. One process (-N: no daemon, no kids;
# its certificate helpers are counted as its children).
start_squid() {
    local sq=$WORK/squid
    mkdir -p "$sq"
    chmod 711 "$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=squid bench CA" -addext "basicConstraints=critical,CA:true" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -keyout "$sq/ca.key" -out "$sq/ca.pem" 2>/dev/null
    cp "$WORK/ca.pem" "$sq/upstream-ca.pem"
    printf '127.0.0.1 localhost\n' >"$sq/hosts"
    "$SQUID_CERTGEN" -c -s "$sq/ssl_db" -M 16MB >/dev/null
    SQUID_PORT=$(free_port)
    cat >"$sq/squid.conf" <<EOF
http_port 127.0.0.1:$SQUID_PORT ssl-bump tls-cert=$sq/ca.pem tls-key=$sq/ca.key generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program $SQUID_CERTGEN -s $sq/ssl_db -M 16MB
sslcrtd_children 4 startup=1 idle=1
tls_outgoing_options cafile=$sq/upstream-ca.pem
ssl_bump bump all
acl bench_host dstdomain localhost
acl bench_port port $NGINX_PORT
acl CONNECT method CONNECT
http_access allow CONNECT bench_host bench_port
http_access allow bench_host bench_port
http_access deny all
cache deny all
cache_mem 0 MB
hosts_file $sq/hosts
pinger_enable off
netdb_filename none
access_log stdio:$sq/access.log
cache_log $sq/cache.log
pid_filename $sq/squid.pid
coredump_dir $sq
shutdown_lifetime 1 seconds
EOF
    chown -R proxy:proxy "$sq"
    squid -N -f "$sq/squid.conf" >"$sq/stderr.log" 2>&1 &
    SQUID_PID=$!
    PIDS+=("$SQUID_PID")
    wait_port "$SQUID_PORT"
}

start_mitmdump() {
    MITMDUMP_PORT=$(free_port)
    mitmdump -q --listen-host 127.0.0.1 -p "$MITMDUMP_PORT" --set confdir="$WORK/mitm" \
        --set ssl_verify_upstream_trusted_ca="$WORK/ca.pem" >"$WORK/mitm.log" 2>&1 &
    MITMDUMP_PID=$!
    PIDS+=("$MITMDUMP_PID")
    wait_port "$MITMDUMP_PORT"
    wait_file "$WORK/mitm/mitmproxy-ca-cert.pem"
}
