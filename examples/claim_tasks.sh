#!/usr/bin/env bash
# CAS task claiming (SPEC §5, recipe 1): many agents share one counter cell, task:next,
# and claim task numbers with compare-and-swap, so no number is ever claimed twice.
#
# Usage: claim_tasks.sh AGENT_ID [TASKS]
#   Claims task numbers until TASKS (default 1) have been handed out in total, printing
#   "AGENT_ID claimed task N" for each one. Run it from several shells at once.
# Environment: SWARMLOG (the binary, default `swarmlog` on PATH), SWARMLOG_DB (the data
#   directory, default ./data; no server needed), or SWARMLOG_URL for a server.
set -euo pipefail

SWARMLOG="${SWARMLOG:-swarmlog}"
DB="${SWARMLOG_DB:-./data}"
AGENT_ID="${1:?usage: claim_tasks.sh AGENT_ID [TASKS]}"
TASKS="${2:-1}"
sl() { "$SWARMLOG" --db "$DB" "$@"; }

# Initialize the task counter (a no-op when another agent already did).
sl state init task:next 0 >/dev/null

while true; do
    # Read value and version in ONE call: two separate reads could see two different
    # versions, and a CAS with the newer version and the older value would hand out a
    # task number twice.
    cell=$(sl --json state get task:next)
    current=$(printf '%s' "$cell" | sed -n 's/.*"value":\([0-9][0-9]*\).*/\1/p')
    version=$(printf '%s' "$cell" | sed -n 's/.*"version":\([0-9][0-9]*\).*/\1/p')
    if [ "$current" -ge "$TASKS" ]; then
        break
    fi
    status=0
    sl state cas task:next "$version" "$((current + 1))" >/dev/null 2>&1 || status=$?
    case "$status" in
        0)
            echo "$AGENT_ID claimed task $current"
            sl kv put "task:${current}:owner" "$AGENT_ID" >/dev/null
            sl kv put "task:${current}:status" in_progress >/dev/null
            ;;
        3) ;; # Another agent won this round (version conflict): read again and retry.
        *)
            echo "swarmlog failed with exit code $status" >&2
            exit "$status"
            ;;
    esac
done
