#!/usr/bin/env bash
# Runs every test: formatting, lints, the Rust test suites (core, store on
# SQLite and PostgreSQL, engine, crash-resume with SIGKILL, APIs over HTTP,
# CLI, real QEMU VMs) and the compatibility suites with the real Python
# clients. PostgreSQL tests need LIFEBOAT_TEST_PG_URL (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x guest/build-image.sh ] || [ -f guest/build-image.sh ]; then
  bash guest/build-image.sh
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace -- --test-threads=2

status=0
for suite in compat/*/run.sh; do
  [ -f "$suite" ] || continue
  echo "== $suite"
  bash "$suite" || status=1
done
exit $status
