#!/usr/bin/env bash
# Build the Debian 12 agent image: a minbase root with git, curl, Python
# (pip, venv), Node.js and npm, a non-root user `agent` (1000:1000), and
# optionally a real agent CLI baked in. Written twice from one tree:
#   <cache>/agent-<hash>/rootfs/  a plain root directory (`[vm] image = "rootfs:DIR"`)
#   <cache>/agent-<hash>/oci/     an OCI image layout, tag `latest` (`oci:DIR:latest`)
# <cache> is ${BOTTLE_CACHE_DIR:-$HOME/.cache/bot-bottle}/images, outside the
# checkout; <hash> covers this script, the layout writer, the package list
# and the CLI. A complete cache is reused as is. The build happens in a
# temporary directory renamed into place at the end, so a cache entry is
# either complete or absent. The last line on stdout is the entry's path.
#
# Usage: images/agent-image.sh [--force | --check]
#   --check: print the path if the image is built, else exit 1 (no build)
# Env:   BOTTLE_AGENT_CLI=claude-code (default) | none
#        BOTTLE_CACHE_DIR, BOTTLE_DEBIAN_MIRROR (default: this machine's)
set -euo pipefail
# The whole script is one function, so bash has read all of it before it
# runs (editing the file during a build cannot change the build).
main() {
here=$(cd "$(dirname "$0")" && pwd)

PACKAGES="git curl ca-certificates python3 python3-pip python3-venv nodejs npm"
# The newest release of the CLI that is JavaScript run by Node.js (Debian
# 12 has Node 18): later ones ship a native binary per platform, and from
# 2.1.198 on the package asks for Node >= 22.
CLAUDE_CODE_VERSION=2.1.112
CLI=${BOTTLE_AGENT_CLI:-claude-code}
case "$CLI" in
  claude-code) cli_spec="@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" ;;
  none|"") CLI=none; cli_spec="" ;;
  *) echo "agent-image.sh: BOTTLE_AGENT_CLI must be claude-code or none, not '$CLI'" >&2; exit 2 ;;
esac

step() { printf '[agent-image] %s\n' "$*" >&2; }

CACHE=${BOTTLE_CACHE_DIR:-$HOME/.cache/bot-bottle}/images
hash=$( { cat "$here/agent-image.sh" "$here/oci-layout.py"; echo "$PACKAGES|$CLI|$cli_spec"; } | sha256sum | cut -c1-16)
out="$CACHE/agent-$hash"
# A stable name for manifests (`image = "oci:~/.cache/bot-bottle/images/agent/oci:latest"`,
# examples/claude-code.toml): the last image this script built or found.
link="$CACHE/agent"
[ "$CLI" = none ] && link="$CACHE/agent-nocli"
if [ -f "$out/complete" ] && [ "${1:-}" != --force ]; then
  step "cached"
  [ "${1:-}" = --check ] || ln -sfn "agent-$hash" "$link"
  echo "$out"
  exit 0
fi
if [ "${1:-}" = --check ]; then
  step "not built: $out"
  exit 1
fi

command -v mmdebstrap >/dev/null || {
  echo "agent-image.sh: mmdebstrap not found (apt-get install mmdebstrap, or bash tests/setup.sh)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || {
  echo "agent-image.sh: run as root (mmdebstrap's root mode keeps file owners without subuids)" >&2; exit 1; }

# The mirror this machine's apt uses, unless told otherwise.
mirror=${BOTTLE_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hs -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
    | grep -oE 'https?://[^ ]*/debian/?$|https?://[^ ]*/debian ' | grep -v security | head -1 | tr -d ' ' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
mirror=${mirror%/}
security=${BOTTLE_DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}

mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.agent-$hash.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)

hooks=(
  --customize-hook='chroot "$1" groupadd --gid 1000 agent'
  --customize-hook='chroot "$1" useradd --uid 1000 --gid 1000 --create-home --home-dir /home/agent --shell /bin/bash agent'
)
if [ -n "$cli_spec" ]; then
  # npm in the chroot trusts what this machine trusts (a TLS-inspecting
  # proxy's CA, say) for the download only: the bundle is removed after.
  build_ca=${BOTTLE_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}
  ca_copy='true'
  ca_opt=''
  if [ -f "$build_ca" ]; then
    ca_copy="cp '$build_ca' \"\$1/tmp/build-ca.pem\""
    ca_opt='--cafile /tmp/build-ca.pem'
  fi
  hooks+=(
    --customize-hook="$ca_copy"
    --customize-hook="chroot \"\$1\" npm install --global --prefix /usr/local --no-audit --no-fund --omit=optional $ca_opt $cli_spec >&2"
    --customize-hook='rm -rf "$1"/root/.npm "$1"/root/.cache "$1"/tmp/build-ca.pem'
  )
fi

# dpkg without fsync for the build (mmdebstrap's eatmydata hook, when
# installed): nothing is durable until the final rename anyway.
speed=()
[ -d /usr/share/mmdebstrap/hooks/eatmydata ] && speed=(--hook-directory=/usr/share/mmdebstrap/hooks/eatmydata)

step "mmdebstrap bookworm from $mirror: $PACKAGES${cli_spec:+ + $cli_spec}"
mmdebstrap --variant=minbase --mode=root --format=directory \
  --include="${PACKAGES// /,}" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  "${speed[@]}" "${hooks[@]}" \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log "$1"/var/cache/debconf/*-old' \
  bookworm "$tmp/rootfs" \
  "deb $mirror bookworm main" \
  "deb $mirror bookworm-updates main" \
  "deb $security bookworm-security main" >&2
built=$(date +%s)

step "writing the OCI layout"
python3 "$here/oci-layout.py" "$tmp/rootfs" "$tmp/oci" >&2
done_at=$(date +%s)

{
  echo "script_hash=$hash"
  echo "cli=$CLI${cli_spec:+ $cli_spec}"
  echo "mirror=$mirror"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mmdebstrap_seconds=$((built - start))"
  echo "oci_seconds=$((done_at - built))"
  echo "rootfs_bytes=$(du -sb "$tmp/rootfs" | cut -f1)"
  echo "oci_bytes=$(du -sb "$tmp/oci" | cut -f1)"
} > "$tmp/info"
touch "$tmp/complete"
if [ -f "$out/complete" ] && [ "${1:-}" != --force ]; then
  step "another run finished first; keeping its image"
else
  rm -rf "$out"
  mv -T "$tmp" "$out"
  trap - EXIT
fi
ln -sfn "agent-$hash" "$link"
step "built in $((done_at - start)) s: $(tr '\n' ' ' < "$out/info")"
echo "$out"
}
main "$@"
