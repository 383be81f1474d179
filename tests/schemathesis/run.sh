#!/usr/bin/env bash
# Schemathesis against swarmlog's own OpenAPI document, with every check but
# use_after_free (a deleted agent stays readable as deregistered: see the comment at `st run`).
#
# Starts the debug `swarmlog serve` on a fresh data directory, runs `st run` with all
# checks (server errors, status codes, content types, headers, response schemas, positive
# and negative data) plus our own (hooks.py: a refused request writes nothing), and fails
# unless it passed and sent at least SWARMLOG_SCHEMATHESIS_MIN requests. Finally
# `swarmlog verify` checks the log the run wrote.
#
# Needs python3 with venv; installs schemathesis (requirements.txt) into target/schemathesis-venv.
# Environment: SWARMLOG_BIN (default target/debug/swarmlog), SWARMLOG_SCHEMATHESIS_EXAMPLES
# (examples per operation, default 10), SWARMLOG_SCHEMATHESIS_MIN (default 1500),
# SWARMLOG_SCHEMATHESIS_SEED (default 1, so that CI is repeatable; other seeds explore more).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${SWARMLOG_BIN:-$PWD/target/debug/swarmlog}
examples=${SWARMLOG_SCHEMATHESIS_EXAMPLES:-10}
minimum=${SWARMLOG_SCHEMATHESIS_MIN:-1500}
seed=${SWARMLOG_SCHEMATHESIS_SEED:-1}

venv=target/schemathesis-venv
requirements=tests/schemathesis/requirements.txt
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! cmp -s "$requirements" "$venv/.requirements"; then
    echo "== installing $(grep -v '^#' "$requirements" | xargs) into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/.requirements"
fi

work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
SWARMLOG_LOG=warn "$bin" --db "$work/data" serve --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 1 300); do
    [ -s "$work/data/server.addr" ] && break
    sleep 0.1
done
url=$(head -n 1 "$work/data/server.addr")
echo "== schemathesis against $url (seed $seed, $examples examples per operation)"

# use_after_free (after a DELETE the resource must be gone) is excluded: deleting an agent
# deregisters it, and SPEC §3 keeps a deregistered agent readable with `status:
# deregistered`, so GET /v1/agents/{agent} answers 200 by contract. The stateful phase meets
# this only when its draw chains that DELETE and GET, so CI would depend on the draw; kv's
# DELETE followed by 404 is asserted in tests/it/coordination.rs instead.
status=0
(
    cd tests/schemathesis
    SWARMLOG_URL=$url SWARMLOG_REQUEST_COUNT_FILE="$work/requests" SCHEMATHESIS_HOOKS=hooks \
        PYTHONPATH=. "$OLDPWD/$venv/bin/st" run "$url/v1/openapi.json" \
        --checks all --exclude-checks use_after_free \
        --workers 1 --max-examples "$examples" --seed "$seed" \
        --request-timeout 30 --no-color
) || status=$?
requests=$(cat "$work/requests" 2>/dev/null || echo 0)
echo "== schemathesis sent $requests requests (exit $status)"
if [ "$status" -ne 0 ]; then
    echo "schemathesis found failures; replay with SWARMLOG_SCHEMATHESIS_SEED=$seed" >&2
    exit 1
fi
if [ "$requests" -lt "$minimum" ]; then
    echo "schemathesis sent only $requests requests; at least $minimum are required" >&2
    exit 1
fi
if grep -q "panicked\|aborting" "$work/server.err"; then
    echo "the server logged a panic or an abort:" >&2
    cat "$work/server.err" >&2
    exit 1
fi
kill -TERM "$server_pid"
wait "$server_pid" || { echo "the server did not shut down cleanly" >&2; exit 1; }
server_pid=
"$bin" --db "$work/data" verify >/dev/null
echo "== log verified after $requests requests"
