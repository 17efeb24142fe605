#!/bin/sh
# bottle-entrypoint: the container image's entry point. It runs one
# bottle, `bottle-host launch`, and exits with the agent's exit code (so a
# Kubernetes Job succeeds or fails with the agent).
#
#   bottle-entrypoint [MANIFEST] [bottle-host launch options...]
#
# MANIFEST defaults to $BOTTLE_MANIFEST, else /etc/bottle/bottle.toml (the
# Job mounts its ConfigMap there). Secrets come from the environment, as
# the manifest's [secrets] name them.
#
# Standard output carries only the audit logs as JSON lines, the proxy's
# and the DNS filter's (tell them apart by key: "method" or "name"), for
# the cluster's log pipeline; bottle-host's own messages and the guest
# console go to standard error. bottle-host writes the logs to files in
# the bottle's directory (<state>/bottles/<id>/); a `tail -F` follows each
# one as it grows and, with --pid, reads what is left after bottle-host
# exits, so no line is lost at the end; an awk after it writes each line
# in one write(2), so the two streams never split each other's lines.
# The files stay in the state directory (an emptyDir in the Job).
# BOTTLE_AUDIT=file turns the streaming off. With [egress] audit_log set
# in the manifest, the proxy's log goes there instead.
#
# SIGTERM and SIGINT are passed to bottle-host, which stops the agent
# gracefully (docs/launch.md); as PID 1 a shell would ignore them.
set -eu

export PATH=/usr/local/bin:/usr/bin:/bin
: "${BOTTLE_DATA:=/var/lib/bot-bottle}"
: "${BOTTLE_IMAGE_DIR:=/usr/share/bot-bottle/image}"
: "${XDG_RUNTIME_DIR:=/run/bot-bottle}"
: "${HOME:=$BOTTLE_DATA}"
[ "$HOME" = / ] && HOME=$BOTTLE_DATA
export BOTTLE_IMAGE_DIR XDG_RUNTIME_DIR HOME

manifest=${BOTTLE_MANIFEST:-/etc/bottle/bottle.toml}
case ${1:-} in
  '' | -*) ;;
  *) manifest=$1; shift ;;
esac
# $BOTTLE_DATA may be an emptyDir (mode 0777): the state directory is a
# private directory below it, which bottle-host insists on.
state=$BOTTLE_DATA/state
[ -d "$state" ] || mkdir -m 0700 "$state"
before=$(ls "$state/bottles" 2>/dev/null || true)

bottle-host launch "$manifest" --state-dir "$state" "$@" >&2 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM
trap 'kill -INT "$pid" 2>/dev/null || true' INT

# The bottle's directory is the one that was not there before.
readers=""
if [ "${BOTTLE_AUDIT:-stdout}" = stdout ]; then
  dir=""
  while [ -z "$dir" ] && kill -0 "$pid" 2>/dev/null; do
    for d in $(ls "$state/bottles" 2>/dev/null || true); do
      case " $before " in *" $d "*) ;; *) dir=$state/bottles/$d ;; esac
    done
    [ -n "$dir" ] || sleep 0.1
  done
  if [ -n "$dir" ]; then
    for f in audit.jsonl dns-audit.jsonl; do
      /usr/bin/tail -n +1 -F --pid="$pid" "$dir/$f" 2>/dev/null | awk '{ print; fflush() }' &
      readers="$readers $!"
    done
  fi
fi

code=0
while :; do
  wait "$pid" && code=0 || code=$?
  kill -0 "$pid" 2>/dev/null || break
done
trap - TERM INT
# shellcheck disable=SC2086 # one pid per word
[ -z "$readers" ] || wait $readers
exit "$code"
