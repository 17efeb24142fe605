# Part of the escape probe script: the files of tests/probes/ are
# concatenated in the order tests/src/escape.rs gives (common.py first).
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

    @probe("secrets_header_name")
    def _():
        # A header's name reaches the upstream too (lowercased).
        return must_403("GET", "/leak", {"X-" + SECRET.encode().hex(): "1"})

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

    @probe("secrets_second_content_encoding")
    def _():
        # `identity`, then `gzip` in a second header: both count.
        body = gzip.compress(("pad " * 100 + SECRET).encode())
        conn = http.client.HTTPSConnection(PROXY[0], PROXY[1], timeout=1.8, context=tls_ctx())
        conn.set_tunnel(SITE, PORT)
        try:
            conn.putrequest("POST", "/leak")
            conn.putheader("Content-Encoding", "identity")
            conn.putheader("Content-Encoding", "gzip")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            data = r.read()
            RECEIVED.append(data)
            st, rule = r.status, r.getheader("x-bottle-rule", "")
        finally:
            conn.close()
        if st in (403, 415):
            return f"{st} {rule}"
        raise Refused(f"a second Content-Encoding passed: {st}")

    for form in ["base64", "base64url", "hex", "base32", "urlencoded"]:
        probe(f"secrets_{form}_query")(
            lambda form=form: must_403("GET", "/leak?d=" + urllib.parse.quote(enc_forms(SECRET)[form], safe="%")))
        probe(f"secrets_{form}_body")(
            lambda form=form: must_403("POST", "/leak", {"Content-Type": "text/plain"},
                                       ("data=" + enc_forms(SECRET)[form] + "\n").encode()))

    # Forms ordinary decoders undo without being asked (docs/security.md):
    # hex and base32 in any case, text escapes, one level of stacking.
    def mixed_case(text):
        return "".join(c.upper() if i % 3 else c.lower() for i, c in enumerate(text))

    @probe("secrets_hex_mixedcase_body")
    def _():
        return must_403("POST", "/leak", {"Content-Type": "text/plain"},
                        ("data=" + mixed_case(SECRET.encode().hex()) + "\n").encode())

    @probe("secrets_base32_lowercase_query")
    def _():
        return must_403("GET", "/leak?d=" + base64.b32encode(SECRET.encode()).decode().lower().rstrip("="))

    @probe("secrets_json_escape_body")
    def _():
        esc = "".join(f"\\u{ord(c):04x}" for c in SECRET)
        return must_403("POST", "/leak", {"Content-Type": "application/json"},
                        ('{"note": "hi", "data": "' + esc + '"}').encode())

    @probe("secrets_html_entity_body")
    def _():
        forms = ["&#{};", "&#x{:x};", "&#X{:04X};", "&#000{}"]
        # (the fourth form without its `;`, as HTML parsers accept)
        esc = "".join(forms[i % 4].format(ord(c)) for i, c in enumerate(SECRET))
        return must_403("POST", "/leak", {"Content-Type": "application/xml"},
                        ("<d>" + esc + "</d>").encode())

    @probe("secrets_x_escape_header")
    def _():
        return must_403("GET", "/leak", {"X-Data": "".join(f"\\x{ord(c):02x}" for c in SECRET)})

    @probe("secrets_base64_of_hex_body")
    def _():
        return must_403("POST", "/leak", {"Content-Type": "text/plain"},
                        base64.b64encode(SECRET.encode().hex().encode()))

    @probe("secrets_hex_of_base64_query")
    def _():
        return must_403("GET", "/leak?d=" + base64.b64encode(SECRET.encode()).hex())

    def split_halves(send_a, send_b):
        # The secret in two halves (13 characters each), one per request:
        # each half is a piece of the secret (12 bytes or more), refused on
        # its own.
        half = len(SECRET) // 2
        a = send_a(SECRET[:half])
        b = send_b(SECRET[half:])
        if a != 403 or b != 403:
            raise Refused(f"halves answered {a} and {b}")
        return f"{a} {b}"

    @probe("secrets_split_across_requests")
    def _():
        return split_halves(
            lambda p: must_403_or_status("GET", "/split-1?p=" + urllib.parse.quote(p)),
            lambda p: must_403_or_status("GET", "/split-2?p=" + urllib.parse.quote(p)))

    @probe("secrets_split_across_header_and_body_hex")
    def _():
        return split_halves(
            lambda p: https("GET", "/split-3", {"X-Part": p.encode().hex()})[0],
            lambda p: https("POST", "/split-4", {"Content-Type": "text/plain"},
                            p.encode().hex().encode())[0])

    @probe("secrets_split_across_requests_base64")
    def _():
        return split_halves(
            lambda p: must_403_or_status("GET", "/split-5?p=" + urllib.parse.quote(base64.b64encode(p.encode()).decode())),
            lambda p: https("POST", "/split-6", {"Content-Type": "application/json"},
                            json.dumps({"p": base64.b64encode(p.encode()).decode()}).encode())[0])

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


