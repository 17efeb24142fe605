# Part of the escape probe script: the files of tests/probes/ are
# concatenated in the order tests/src/escape.rs gives (common.py first).
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


