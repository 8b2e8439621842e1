#!/usr/bin/env bash
# The API fuzzed against its own OpenAPI description (schemathesis from PyPI): every route, as a
# signed-in team that is also the contest's admin, bounded by examples per route (not by time).
# It passes with 0 server errors and 0 schema violations (issue 23). Levels are evaluated by the
# TEST DOUBLE tests/server/fake_level_runner.py, so started jobs end quickly without Docker.
# Usage: .ci/schemathesis.sh [MAX_EXAMPLES]   (default 25; the seed is fixed so a failure reproduces)
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-25}
work=$(mktemp -d)
server_pid="" registry_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null
  wait 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) registry_port=$(free_port)
printf 'game,state\nFake,Level1\nFake,Level2\n' > "$work/levels.csv"
python -m contestkit server init --data-dir "$work/contest" --registry "127.0.0.1:$registry_port" \
  --server-url "http://127.0.0.1:$port" --levels "$work/levels.csv" --evaluator tests.server.fake_level_runner:fake_level_runner --no-pull --timestep-limit 300 --wallclock-limit 60 >/dev/null
# Replace init's `admins: []` rather than add a second admins line (server.yaml refuses duplicate keys).
sed -i '/^admins:/d' "$work/contest/server.yaml"
echo "admins: [fuzz@example.org]" >> "$work/contest/server.yaml"
echo "fuzz password 1234" | python -m contestkit server add-team fuzz --email fuzz@example.org --password-stdin \
  --data-dir "$work/contest" >/dev/null
# The real registry (Debian's docker-registry, as the tests use it): the repository listing asks it.
docker-registry serve "$work/contest/registry/config.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
python -m contestkit server run --data-dir "$work/contest" --host 127.0.0.1 --port "$port" --log-level warning --no-registry \
  > "$work/server.log" 2>&1 &
server_pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -fs "$url/rest/health" >/dev/null && break; sleep 0.2; done
mint() {
  curl -fs -X POST "$url/rest/token" -H 'Content-Type: application/json' \
    -d '{"email": "fuzz@example.org", "password": "fuzz password 1234", "name": "fuzz"}' \
    | python -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
fuzz() {  # fuzz TOKEN [st options]: every check that a response can fail, 0 allowed
  local token=$1; shift
  # In the scratch directory: schemathesis leaves a .schemathesis/ folder where it runs.
  (cd "$work" && st run "$url/openapi.json" --max-examples "$examples" --seed 23 --generation-deterministic \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --header "Authorization: Bearer $token" --request-timeout 30 --no-color "$@")
}
# Both tokens first: the fuzzing of POST /rest/login gets the account throttled for password logins.
first=$(mint) last=$(mint)
status=0
# Every route but the two that end the fuzzer's own token (logout, token revocation) ...
fuzz "$first" --exclude-path /rest/logout --exclude-path-regex '^/rest/token/' || status=$?
# ... and those two last, with a token of their own.
fuzz "$last" --include-path /rest/logout --include-path-regex '^/rest/token/' || status=$?
if grep -q "Traceback" "$work/server.log"; then echo "the server logged a traceback:"; cat "$work/server.log"; status=1; fi
exit $status
