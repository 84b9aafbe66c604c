#!/usr/bin/env bash
# OpenAPI-driven fuzz of the native API: starts `lifeboat serve` (fake
# driver) in a temp data dir, logs in as admin and runs schemathesis against
# /api/v1/openapi.json with a bounded number of examples, then stateful
# scenarios over the document's links (schemathesis.toml). Fails on any 5xx,
# status or content type the document does not list, or response body that
# does not match its schema (so every error must be the documented JSON).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${LIFEBOAT_TOOLS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat-tools}"
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "FAIL: schemathesis not found in $venv (run scripts/setup.sh or set LIFEBOAT_TOOLS_VENV)" >&2
  exit 1
fi
if [ -z "${LIFEBOAT_BIN:-}" ]; then
  (cd "$root" && cargo build -q -p lifeboat)
  LIFEBOAT_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/lifeboat"
fi
py="$venv/bin/python"
tmp="$(mktemp -d /tmp/lifeboat-native-fuzz.XXXXXX)"
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
mkdir -p "$tmp/data"
"$LIFEBOAT_BIN" serve --driver fake --listen "127.0.0.1:$port" --data-dir "$tmp/data" \
  --sync-interval 1 >"$tmp/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 600); do
  grep -q "serving on" "$tmp/serve.log" 2>/dev/null && break
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "FAIL: lifeboat serve exited:" >&2; cat "$tmp/serve.log" >&2; exit 1
  fi
  sleep 0.1
done
grep -q "serving on" "$tmp/serve.log" || { echo "FAIL: lifeboat serve did not start" >&2; cat "$tmp/serve.log" >&2; exit 1; }

# Log in as admin and lift the default quotas so creates are exercised.
# Seed what no link can make in a few steps: an image that may be deleted
# (a snapshot of a server; the default image is protected) and floating
# IPs and unused subnets, so DELETE /images/{id}, /floating-ips/{id} and
# /subnets/{id} meet real ones through their lists (the fuzz may delete the external
# network's subnet before its own floating IP creates run).
token="$("$py" - "$url" "$tmp/data/admin-credentials.json" <<'PY'
import json, sys, time, urllib.request
url, creds = sys.argv[1], json.load(open(sys.argv[2]))
def call(method, path, body, token=None):
    req = urllib.request.Request(url + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json",
                                          **({"X-Auth-Token": token} if token else {})})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())
tok = call("POST", "/api/v1/auth/tokens",
           {"username": creds["username"], "password": creds["password"]})["token"]
call("PUT", "/compute/v2.1/os-quota-class-sets/default",
     {"quota_class_set": {"instances": -1, "cores": -1, "ram": -1}}, tok)
server = call("POST", "/api/v1/servers", {"name": "seed", "flavor": "m1.nano"}, tok)[0]["server"]["id"]
def wait(what, ok):
    for _ in range(600):
        if ok():
            return
        time.sleep(0.1)
    sys.exit(f"FAIL: seeding: {what} did not happen in 60 s")
wait("server ACTIVE", lambda: call("GET", f"/api/v1/servers/{server}", None, tok)["status"] == "ACTIVE")
image = call("POST", f"/api/v1/servers/{server}/actions",
             {"action": "create_image", "name": "seed-snapshot"}, tok)["image_id"]
wait("snapshot active", lambda: any(i["id"] == image and i["status"] == "active"
                                    for i in call("GET", "/api/v1/images", None, tok)))
for _ in range(3):
    call("POST", "/api/v1/floating-ips", {}, tok)
for n in range(2):
    net = call("POST", "/api/v1/networks", {"name": f"seed-{n}"}, tok)["id"]
    call("POST", "/api/v1/subnets", {"network": net, "cidr": f"10.9{n}.0.0/24"}, tok)
print(tok)
PY
)"

start=$(date +%s)
touch "$tmp/started"
set +e
# One worker: with two, hypothesis' lambda-source parsing races in CPython
# 3.11 ("AST constructor recursion depth mismatch", a runtime error that
# fails the run now and then).
# schemathesis keeps its cache (.schemathesis/) in the working directory:
# run it in the temp dir so no run writes into the repository.
cd "$tmp"
"$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$url/api/v1/openapi.json" \
  --url "$url" \
  -H "X-Auth-Token: $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases "${LIFEBOAT_FUZZ_PHASES:-examples,coverage,fuzzing,stateful}" \
  --max-examples "${LIFEBOAT_FUZZ_EXAMPLES:-60}" \
  --workers 1 --request-timeout 20 --seed "${LIFEBOAT_FUZZ_SEED:-7}" \
  --generation-database none --no-color --report junit --report-dir "$tmp/report" "$@"
rc=$?
set -e
echo "native fuzz: schemathesis exit $rc after $(( $(date +%s) - start ))s"
if [ -n "$(find "$root/.schemathesis" -newer "$tmp/started" 2>/dev/null | head -1)" ]; then
  echo "FAIL: the run wrote into $root/.schemathesis (its cache belongs in the temp dir)" >&2
  rc=1
fi
if grep -E "panicked|internal error" "$tmp/serve.log" >/dev/null; then
  echo "FAIL: the server logged a panic or an internal error:" >&2
  grep -E "panicked|internal error" "$tmp/serve.log" | head -20 >&2
  rc=1
fi
exit $rc
