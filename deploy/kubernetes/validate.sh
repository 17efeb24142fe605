#!/usr/bin/env bash
# Validate Kubernetes manifests offline against the JSON schemas of a
# pinned Kubernetes version, with kubernetes-validate (PyPI; it bundles
# the schemas, so nothing is fetched while validating). Strict: a field
# the schema does not know is an error. Installs the pinned validator
# (requirements.txt) into a venv cached outside the checkout, under
# ${BOTTLE_CACHE:-$XDG_CACHE_HOME/bot-bottle} and keyed by the hash of
# requirements.txt and the Python version.
#
# Usage: deploy/kubernetes/validate.sh [--install] [FILE.yaml ...]
#   no file: every YAML file in deploy/kubernetes/; --install only installs.
# Exit code 0 when every document of every file is valid.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION=1.33.0

python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
key=$({ cat "$here/requirements.txt"; "$python" --version; } | sha256sum | cut -c1-16)
cache=${BOTTLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bot-bottle}
venv=$cache/kubernetes-validate-$key
if [ ! -f "$venv/.installed" ]; then
  echo "validate.sh: installing kubernetes-validate into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
    -r "$here/requirements.txt"
  touch "$venv/.installed"
fi
if [ "${1:-}" = --install ]; then exit 0; fi

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=("$here"/*.yaml)
fi
exec "$venv/bin/kubernetes-validate" --strict --no-warn -k "$K8S_VERSION" "${files[@]}"
