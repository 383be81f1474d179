#!/usr/bin/env bash
# Every test of the project, as CI runs them (.ci/run calls this):
#   1. the Rust tests of the whole workspace (`cargo test --workspace --locked`);
#   2. the MCP end-to-end suite (tests/mcp), which drives the debug `swarmlog` binary with
#      the official Python MCP SDK from a virtualenv of its own at target/mcp-venv
#      (created on first run; dependencies pinned in tests/mcp/requirements.txt);
#   3. schemathesis against the server's own OpenAPI document with every check
#      (tests/schemathesis/run.sh, venv at target/schemathesis-venv).
# The Rust tests include the reliability suite (tests/reliability: kill -9 cycles and
# linearizability histories; RELIABILITY.md has the figures and the longer runs).
# Needs cargo and python3 (with the venv module); pip needs access to PyPI on first run.
# Extra arguments are passed to pytest, e.g. `bash tests/run-all.sh -k wait_events`.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test --workspace --locked

echo "== cargo build (debug swarmlog for the MCP tests)"
cargo build --locked --bin swarmlog

venv=target/mcp-venv
requirements=tests/mcp/requirements.txt
stamp=$venv/.requirements
if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv"
    python3 -m venv "$venv"
fi
if ! cmp -s "$requirements" "$stamp"; then
    echo "== installing $(grep -v '^#' "$requirements" | xargs) into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
fi

echo "== MCP tests (Python SDK)"
SWARMLOG_BIN="$PWD/target/debug/swarmlog" "$venv/bin/python" -m pytest -q tests/mcp "$@"

echo "== schemathesis (OpenAPI, every check)"
SWARMLOG_BIN="$PWD/target/debug/swarmlog" bash tests/schemathesis/run.sh
