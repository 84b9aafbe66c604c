#!/usr/bin/env bash
# Runs the OpenStack compatibility suite: the latest openstacksdk and
# python-openstackclient (from PyPI, in a venv) against a live `lifeboat serve`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${LIFEBOAT_COMPAT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat-compat-openstack}"
# scripts/setup.sh makes the venv; this only fills it in when run on its own.
if [ ! -x "$venv/bin/openstack" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q openstacksdk python-openstackclient pytest
fi
if [ -z "${LIFEBOAT_BIN:-}" ]; then
  (cd "$root" && cargo build -q -p lifeboat)
  target="${CARGO_TARGET_DIR:-$root/target}"
  export LIFEBOAT_BIN="$target/debug/lifeboat"
fi
export PATH="$venv/bin:$PATH"
cd "$here"
exec "$venv/bin/python" -m pytest -q "$@"
