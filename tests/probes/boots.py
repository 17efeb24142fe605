# Part of the escape probe script: the files of tests/probes/ are
# concatenated in the order tests/src/escape.rs gives (common.py first).
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
    # The DNS filter drops private answers; the proxy's lookups go through
    # the same filter, which tells it the addresses were dropped: a 403
    # upstream-address-refused from the proxy itself, no connection made.
    for name, label in REBIND:
        probe(f"dns_rebind_{label}_dropped")(lambda name=name: dns_no_address(name))
        probe(f"proxy_allowed_name_{label}_refused")(
            lambda name=name: refused_by_proxy(name, (403,), "upstream-address-refused"))

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
