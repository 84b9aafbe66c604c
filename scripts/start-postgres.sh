#!/usr/bin/env bash
# Starts the local PostgreSQL cluster (Debian packaging) and creates the test
# role and database used by LIFEBOAT_TEST_PG_URL. Idempotent.
set -euo pipefail
ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
if ! pg_lsclusters -h | grep -q .; then
  pg_createcluster "$ver" main
fi
read -r cver cname _ <<<"$(pg_lsclusters -h | head -n1)"
pg_ctlcluster "$cver" "$cname" start 2>/dev/null || true
for _ in $(seq 1 30); do
  pg_isready -h 127.0.0.1 -q && break
  sleep 0.5
done
su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='lifeboat'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"CREATE ROLE lifeboat LOGIN SUPERUSER PASSWORD 'lifeboat-test'\""
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='lifeboat_test'\"" | grep -q 1 ||
  su postgres -c "createdb -O lifeboat lifeboat_test"
# Drop databases left by earlier test runs.
for db in $(su postgres -c "psql -tAc \"SELECT datname FROM pg_database WHERE datname ~ '^lifeboat_t_[0-9a-f]+'\""); do
  su postgres -c "dropdb --if-exists $db" || true
done
echo "postgres: ready"
