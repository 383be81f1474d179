#!/usr/bin/env bash
# Per-agent branches (SPEC §5, recipe 2): each agent works on its own branch, invisible to
# the others and to main, and a coordinator aggregates the results afterwards.
#
# Usage: branch_per_agent.sh work I       agent I creates branch agent-I and writes its result
#        branch_per_agent.sh aggregate N  prints "Agent I: RESULT" for I in 0..N-1
# Environment: SWARMLOG (the binary, default `swarmlog` on PATH), SWARMLOG_DB (the data
#   directory, default ./data).
set -euo pipefail

SWARMLOG="${SWARMLOG:-swarmlog}"
DB="${SWARMLOG_DB:-./data}"
sl() { "$SWARMLOG" --db "$DB" "$@"; }

case "${1:-}" in
    work)
        i="${2:?usage: branch_per_agent.sh work I}"
        sl branch create "agent-$i" >/dev/null
        sl --branch "agent-$i" kv put result "Agent $i result" >/dev/null
        sl --branch "agent-$i" state set status done >/dev/null
        ;;
    aggregate)
        n="${2:?usage: branch_per_agent.sh aggregate N}"
        for ((i = 0; i < n; i++)); do
            result=$(sl --branch "agent-$i" --raw kv get result)
            status=$(sl --branch "agent-$i" --raw state get status)
            echo "Agent $i: $result ($status)"
        done
        ;;
    *)
        echo "usage: branch_per_agent.sh work I | aggregate N" >&2
        exit 2
        ;;
esac
