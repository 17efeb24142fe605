#!/bin/sh
# The demo agent. It runs inside the bottle the way an untrusted coding
# agent would (as root, with real tools), tries the things the bottle
# exists to allow and to stop, and exits 0 only if every one behaved.
# `bottle-host launch examples/demo.toml` returns that exit code.
#
# Needs the demo testbed on the host (images/demo.sh starts it): a DNS
# zone where *.bottle.test is 127.0.0.1 and an HTTPS site on port 8443.

site=https://demo.bottle.test:8443
pass=0
fail=0
check() { # check "what" command...
  what=$1; shift
  if out=$("$@" 2>&1); then
    pass=$((pass + 1)); printf '  ok    %s\n' "$what"
  else
    fail=$((fail + 1)); printf '  FAIL  %s\n' "$what"
  fi
  [ -n "$out" ] && printf '        %s\n' "$(echo "$out" | head -3 | tr '\n' ' ')"
  return 0
}
fails() { ! "$@"; }

echo
echo "== inside the bottle: $(uname -sr), $(id -un) =="
echo "-- what the agent can see"
check "network interfaces: only lo" sh -c '[ "$(ls /sys/class/net)" = lo ] && ls /sys/class/net'
check "/etc/resolv.conf points at the bottle's DNS stub" grep -x 'nameserver 127.0.0.1' /etc/resolv.conf
check "HTTPS_PROXY is the bottle's forwarder" sh -c 'echo "$HTTPS_PROXY" | grep -q 127.0.0.1:3128 && echo "$HTTPS_PROXY"'

echo "-- what is allowed"
check "resolve demo.bottle.test (getent)" getent hosts demo.bottle.test
check "fetch $site/hello (curl, MITM CA trusted)" sh -c "curl -sS --max-time 30 $site/hello | grep -x 'hello from upstream'"
check "fetch with Python urllib" python3 -c "import urllib.request as u; print(u.urlopen('$site/py', timeout=30).read().decode().strip())"
check "the proxy injected the real token (agent sent a placeholder)" sh -c "curl -sS --max-time 30 -D - -o /dev/null -H 'authorization: Bearer placeholder' $site/api | grep -i '^x-auth: ok'"

echo "-- what is stopped"
check "denied name -> NXDOMAIN, fast" sh -c 'dnsq evil.example.com A | grep "^NXDOMAIN"'
check "TXT for an allowed name -> REFUSED" sh -c 'dnsq demo.bottle.test TXT | grep "^REFUSED"'
check "DNS tunnel label under an allowed wildcard -> NXDOMAIN" sh -c 'dnsq 6a3f9c0d1e2b4a5968778695a4b3c2d1e0f9a8b7.tunnel.bottle.test A | grep "^NXDOMAIN"'
check "resolver hard-coded to 8.8.8.8 -> no route" fails dnsq example.com A 8.8.8.8
check "HTTPS to a denied host -> 403" sh -c "curl -sS --max-time 30 -o /dev/null -w '%{http_code}' https://example.com/ 2>&1 | grep -q 403 && echo 403"
check "a GitHub token in a request -> 403 by DLP" sh -c "curl -sS --max-time 30 -o /dev/null -w '%{http_code}' '$site/upload?t=ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5' | grep -x 403"
check "direct TCP to the internet -> no route" fails python3 -c "import socket; socket.create_connection(('1.1.1.1', 443), timeout=3)"

echo "-- the guest's own report"
check "bottle-guest status" sh -c 'bottle-guest status | head -12'

echo
echo "== $pass passed, $fail failed =="
[ "$fail" -eq 0 ] && exit 0
exit 1
