#!/usr/bin/env bash
# Installs what building and testing need, when it is missing (Debian).
# Quiet and quick when everything is there already.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v python3 >/dev/null || need+=(python3)
# The CLI tests talk to `ssock` with nc and socat (line and raw framings).
command -v nc >/dev/null || need+=(netcat-openbsd)
command -v socat >/dev/null || need+=(socat)
# The examples' test reads the client's address with ss; the install test
# builds a consumer with pkg-config; CI runs the net tests under valgrind.
command -v ss >/dev/null || need+=(iproute2)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v valgrind >/dev/null || need+=(valgrind)
# The Python package (python/, issue 11): Debian's python3 needs its headers
# to build the extension and pip for the offline pip-install test. (A python3
# first on PATH that is not Debian's, pyenv's say, brings its own headers.)
py_headers() { "$1" -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' 2>/dev/null; }
[ -x /usr/bin/python3 ] && py_headers /usr/bin/python3 || need+=(python3-dev)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
