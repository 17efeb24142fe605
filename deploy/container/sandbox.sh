#!/usr/bin/env bash
# Run the container image's root filesystem (deploy/container/rootfs.sh)
# the way a container runtime with the Kubernetes Job's security context
# would, without a container engine and without root: unprivileged user,
# mount, PID and network namespaces; the root read-only; tmpfs on /tmp,
# /run/bot-bottle and /var/lib/bot-bottle (the Job's emptyDirs); a minimal
# /dev (null, zero, full, random, urandom, and /dev/kvm when present);
# CONFIG_DIR read-only on /etc/bottle (the Job's ConfigMap); then
# bottle-entrypoint as PID 1 with uid and gid 10001, no capabilities and
# no_new_privs. The network namespace has only loopback: nothing inside
# reaches the host's network, so the test that uses this
# (tests/tests/container_rootfs.rs) starts its stand-in internet inside it
# with --setup.
#
# Usage: deploy/container/sandbox.sh [options] ROOTFS [-- ENTRYPOINT ARGS...]
#   --config DIR   mounted read-only on /etc/bottle (bottle.toml, ...)
#   --env NAME     pass NAME from this environment (the Job's Secret env)
#   --setup CMD    run CMD (bash -c, on the host's file system, as the
#                  namespaces' root) inside the network namespace before
#                  the container starts; what it leaves running is killed
#                  with the PID namespace at the end
# The exit code is the entrypoint's: the agent's.
set -euo pipefail

BOTTLE_UID=10001
if [ "${BOTTLE_SANDBOX_INNER:-}" != 1 ]; then
  exec unshare --user --map-root-user --mount --pid --net --fork --kill-child \
    --mount-proc --propagation private \
    env BOTTLE_SANDBOX_INNER=1 bash "${BASH_SOURCE[0]}" "$@"
fi

# Inside: root of the new user namespace, with its capabilities there.
config="" setup="" envs=()
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$2; shift 2 ;;
    --env) envs+=("$2=${!2?$2 is not set}"); shift 2 ;;
    --setup) setup=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "sandbox.sh: unknown option $1" >&2; exit 2 ;;
    *) [ -z "${root:-}" ] || break; root=$(realpath "$1"); shift ;;
  esac
done
[ "${1:-}" = -- ] && shift
if [ -z "${root:-}" ] || [ ! -x "$root/usr/local/bin/bottle-entrypoint" ]; then
  echo "sandbox.sh: give the root filesystem deploy/container/rootfs.sh made" >&2
  exit 2
fi

ip link set lo up
if [ -n "$setup" ]; then bash -c "$setup"; fi

mount --rbind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
for d in run/bot-bottle var/lib/bot-bottle; do
  # An emptyDir: a fresh directory anyone may write (the entrypoint makes
  # its private state directory below it).
  mount -t tmpfs -o mode=0777,nosuid,nodev tmpfs "$root/$d"
done
mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
for d in null zero full random urandom kvm; do
  [ -e "/dev/$d" ] || continue
  touch "$root/dev/$d"
  mount --bind "/dev/$d" "$root/dev/$d"
done
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
[ -z "$config" ] || mount --bind -o ro "$config" "$root/etc/bottle"

# The container: a user namespace of its own where uid and gid 10001 are
# this namespace's root (so, outside, the user who ran this script). The
# exec as a non-root uid clears every capability (permitted, effective,
# inheritable, ambient) and no_new_privs means no exec can bring one back.
# The bounding set stays full in that namespace: dropping it first makes
# the kernel refuse the namespace's uid map, and with no_new_privs and no
# permitted capability it has nothing left to bound.
exec setpriv --no-new-privs --inh-caps=-all -- \
  unshare --user --map-user="$BOTTLE_UID" --map-group="$BOTTLE_UID" \
  --root="$root" --wd=/ -- \
  /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin "${envs[@]}" \
  /usr/local/bin/bottle-entrypoint "$@"
