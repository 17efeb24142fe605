#!/usr/bin/env bash
# Copy real user-space tools from this (Debian/Ubuntu) host into a guest
# root directory, with the shared libraries they need: curl, getent,
# python3 (standard library without tests, tkinter, idle and the build
# config). The default image carries them so the demo agent and the
# end-to-end and escape tests run real clients inside the VM, not busybox
# stand-ins. A tool missing on the host is skipped with a message.
#
# Usage: images/tools.sh ROOT
set -euo pipefail
root=${1:?usage: images/tools.sh ROOT}

copy_file() { # copy a file keeping its absolute path under $root
  local f=$1 dst
  # Debian merges /lib into /usr/lib: keep one copy, under /usr/lib (the
  # root's /lib/x86_64-linux-gnu points there).
  case $f in /lib/x86_64-linux-gnu/*) dst=/usr$f ;; *) dst=$f ;; esac
  [ -e "$root$dst" ] || [ -L "$root$dst" ] && return 0
  mkdir -p "$root$(dirname "$dst")"
  if [ -L "$f" ] && [ "${dst#/usr/lib/}" != "$dst" ]; then
    # A library's version symlink: keep the link, copy what it names.
    ln -s "$(readlink "$f")" "$root$dst"
    copy_file "$(readlink -f "$f")"
  else
    cp -L "$f" "$root$dst"
  fi
}

copy_with_libs() { # a binary and every library ldd names for it
  local bin=$1
  copy_file "$bin"
  { ldd "$bin" 2>/dev/null || true; } | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | while read -r lib; do
    copy_file "$lib"
  done
}

# The distribution's own tools, not a version manager's shims.
syspath() { PATH=/usr/bin:/bin command -v "$1" || true; }

for tool in curl getent python3; do
  path=$(syspath "$tool")
  if [ -z "$path" ]; then
    echo "[image] tools: $tool not on this host; skipped" >&2
    continue
  fi
  real=$(readlink -f "$path")
  copy_with_libs "$real"
  if [ "$real" != "$path" ]; then
    mkdir -p "$root$(dirname "$path")"
    ln -sf "$real" "$root$path"
  fi
done

# Python's standard library (and its C extension modules' libraries).
py=$(syspath python3)
if [ -n "$py" ]; then
  ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  lib=/usr/lib/python$ver
  mkdir -p "$root$lib"
  tar -C "$lib" --exclude=test --exclude=tests --exclude=idlelib --exclude=tkinter \
      --exclude=turtledemo --exclude=ensurepip --exclude='config-*' --exclude=lib2to3 \
      --exclude=site-packages --exclude=dist-packages --exclude=pydoc_data --exclude=distutils -cf - . | tar -C "$root$lib" -xf -
  for so in "$root$lib"/lib-dynload/*.so; do
    { ldd "$so" 2>/dev/null || true; } | awk '/=> \// {print $3}' | while read -r l; do copy_file "$l"; done
  done
fi

mkdir -p "$root/lib" "$root/usr/lib/x86_64-linux-gnu"
[ -e "$root/lib/x86_64-linux-gnu" ] || ln -s ../usr/lib/x86_64-linux-gnu "$root/lib/x86_64-linux-gnu"

# Name service switch for getent/glibc, and an empty system CA bundle that
# the guest's CA install appends the bottle's CA to (as on Debian).
mkdir -p "$root/etc/ssl/certs"
[ -f "$root/etc/nsswitch.conf" ] || printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"
[ -f "$root/etc/hosts" ] || printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
: > "$root/etc/ssl/certs/ca-certificates.crt"
touch "$root/etc/debian_version"
