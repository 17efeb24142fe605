# Part of the escape probe script: the files of tests/probes/ are
# concatenated in the order tests/src/escape.rs gives (common.py first).
# ---------------------------------------------------------------- proxy

if MODE == "main":
    @probe("proxy_baseline_allowed")
    def _():
        st, h, data = https("GET", "/baseline")
        if st != 200 or data != b"hello from upstream\n" or h.get("x-auth") != "ok":
            raise Refused(f"allowed request failed: {st} {h.get('x-auth')} {data[:60]!r}")
        return "200 x-auth ok"

    @probe("proxy_reflected_token_redacted")
    def _():
        # The site echoes the Authorization header it got (the injected
        # token) in a header and the body: the guest must get `*`s.
        st, h, data = https("GET", "/baseline-reflect", {"Authorization": "Bearer placeholder"})
        whole = data + str(sorted(h.items())).encode()
        if token_in(whole):
            raise Refused("the injected token came back in the response")
        stars = b"*" * TOKEN_LEN
        if st != 200 or h.get("x-auth") != "ok" or stars not in data \
                or stars.decode() not in h.get("x-echo-authorization", ""):
            raise Refused(f"no redacted reflection: {st} {h.get('x-auth')} {data[:80]!r}")
        return "200, token injected, reflected as *s in header and body"

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
                raise Refused(f"inner CONNECT: connection dropped ({type(e).__name__}), no 4xx")
        finally:
            s.close()
        st = status_of(reply)
        # A clean refusal: a 4xx answer, not a dropped connection (which
        # is what a panicking proxy task looks like).
        if st is None or not 400 <= st < 500:
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

    @probe("proxy_plain_http_injecting_route")
    def _():
        # The route injects the token: over plain HTTP it would cross the
        # network in clear, so the proxy refuses before dialling.
        req = f"GET http://{SITE}:{PORT}/plain-inject HTTP/1.1\r\nHost: {SITE}:{PORT}\r\n\r\n"
        got = expect_403(proxy_raw(req.encode()), "plain inject")
        if got != "403 inject-needs-tls":
            raise Refused(f"plain inject: {got}")
        return got

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


