# Part of the escape probe script: the files of tests/probes/ are
# concatenated in the order tests/src/escape.rs gives (common.py first).
# ------------------------------------------------------------ tampering

if MODE == "main":
    @probe("tamper_bind_dns_port")
    def _():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            return expect_errno(lambda: s.bind(("127.0.0.1", 53)), (errno.EADDRINUSE,))
        finally:
            s.close()

    @probe("tamper_bind_proxy_port")
    def _():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            return expect_errno(lambda: s.bind(("127.0.0.1", 3128)), (errno.EADDRINUSE,))
        finally:
            s.close()

    @probe("tamper_kill_pid1")
    def _():
        # SIGKILL to PID 1 from inside its namespace is ignored by the
        # kernel; the stub and forwarder (tasks in PID 1) keep refusing.
        os.kill(1, 9)
        time.sleep(0.2)
        state = open("/proc/1/stat").read().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            raise Refused("PID 1 died")
        return "alive; " + dns_blocked("after-kill.example.com", "A")

    @probe("tamper_ptrace_pid1")
    def _():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        libc.ptrace.restype = ctypes.c_long
        PTRACE_SEIZE, PTRACE_DETACH = 0x4206, 17
        r = libc.ptrace(PTRACE_SEIZE, 1, None, None)
        if r == 0:
            libc.ptrace(PTRACE_DETACH, 1, None, None)
            # Root may trace PID 1; what matters is that PID 1 holds
            # nothing worth reading (tamper_pid1_memory_has_no_token) and
            # the guards are on the host (the DNS answer below).
            return "seized (root may trace) and detached; " + dns_blocked("after-ptrace.example.com", "A")
        e = ctypes.get_errno()
        return f"refused {errno.errorcode.get(e, e)}"

    @probe("tamper_trust_store")
    def _():
        # Replace the trust stores with garbage: nothing host-side changes,
        # a denied host is still refused at CONNECT.
        paths = ["/etc/ssl/certs/ca-certificates.crt", os.environ.get("SSL_CERT_FILE", "")]
        saved = {}
        for p in filter(None, paths):
            try:
                saved[p] = open(p, "rb").read()
                with open(p, "ab") as f:
                    f.write(b"\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            except OSError:
                pass
        try:
            if not saved:
                raise Refused("no trust store written")
            return f"wrote {len(saved)} stores; " + expect_403(
                proxy_raw(b"CONNECT evil.example.com:443 HTTP/1.1\r\nHost: evil.example.com\r\n\r\n"), "after")
        finally:
            for p, data in saved.items():
                with open(p, "wb") as f:
                    f.write(data)

    @probe("tamper_own_proxy_env")
    def _():
        # Point the proxy settings elsewhere (a direct connection): there is
        # no route, so curl fails at once.
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        r = subprocess.run(["curl", "-sS", "--max-time", "1.5", "https://1.1.1.1/"],
                           capture_output=True, text=True, env=env, timeout=3)
        if r.returncode == 0:
            raise Refused("direct curl succeeded")
        if r.returncode == 28:
            raise Refused("direct curl timed out (no explicit refusal)")
        return f"curl exit {r.returncode}: {r.stderr.strip()[:80]}"

    @probe("dns_unique_label_budget", limit_ms=20000)
    def _():
        # Many short, unique, innocent-looking labels: after the per-domain
        # budget (30 in the probe manifest) the names are refused.
        answered = refused = 0
        for i in range(45):
            rcode, an, _ = dns_query(f"w{i}x{random.randrange(10**6)}.tunnel.bottle.test", "A")
            if rcode == "NOERROR" and an:
                answered += 1
            elif rcode in ("NXDOMAIN", "REFUSED"):
                refused += 1
        if answered > 30 or refused < 15:
            raise Refused(f"{answered} answered, {refused} refused")
        return f"{answered} answered, then {refused} refused"


