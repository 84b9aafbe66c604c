#!/usr/bin/env bash
# The one test command. Sets up everything first (scripts/setup.sh: Debian
# packages, PostgreSQL, Python venvs, the guest image; idempotent), then runs
# every test: formatting, lints, the Rust test suites (core, store on SQLite
# and PostgreSQL, engine, crash-resume with SIGKILL, APIs over HTTP, CLI, real
# QEMU VMs, the snapshot store on the filesystem and S3, host networking in
# namespaces) and the compatibility suites with the real Python clients.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

cache="${XDG_CACHE_HOME:-$HOME/.cache}"
export LIFEBOAT_TEST_PG_URL="${LIFEBOAT_TEST_PG_URL:-postgres://lifeboat:lifeboat-test@127.0.0.1:5432/lifeboat_test}"
export LIFEBOAT_TOOLS_VENV="${LIFEBOAT_TOOLS_VENV:-$cache/lifeboat-tools}"
export LIFEBOAT_COMPAT_VENV="${LIFEBOAT_COMPAT_VENV:-$cache/lifeboat-compat-openstack}"
export LIFEBOAT_ENABLE_TEST_HOOKS=1

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
status=0
cargo test --workspace --no-fail-fast -- --test-threads=2 || status=1

for suite in compat/*/run.sh; do
  [ -f "$suite" ] || continue
  echo "== $suite"
  bash "$suite" || status=1
done
exit $status
