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


