#!/usr/bin/env bash
# Centralized coordinator with a dependency chain (research -> write -> edit).
#
# A coordinator starts a session and creates three tasks in one atomic batch, each
# depending on the one before and needing its own capability. Three specialised workers
# run at the same time; each can only claim its task once the one before is completed,
# reads the upstream result, and completes its own. The coordinator waits for them and
# prints the session report. Prints "final: ..." with the edited text.
#
# Usage: coordinator_chain.sh [TOPIC]
# Environment: SWARMLOG (the binary, default `swarmlog`), SWARMLOG_DB (the data
#   directory; default a fresh temporary one). No server needed; with one serving the
#   directory, the commands go through it.
set -euo pipefail

SWARMLOG="${SWARMLOG:-swarmlog}"
DB="${SWARMLOG_DB:-$(mktemp -d)}"
TOPIC="${1:-event sourcing}"
sl() { "$SWARMLOG" --db "$DB" "$@"; }
# Waits for every background agent and fails if any of them failed.
wait_all() { local pid; for pid in $(jobs -p); do wait "$pid"; done; }

session=$(sl --raw session start "write an article" --context "\"$TOPIC\"")
for role in research write edit; do
    sl agent register "$role-agent" --type "$role" --capabilities "$role" >/dev/null
done
sl task create --session "$session" --batch '[
  {"id": "research", "type": "research", "capabilities": ["research"], "parameters": "'"$TOPIC"'"},
  {"id": "write", "type": "write", "capabilities": ["write"], "depends_on": ["research"]},
  {"id": "edit", "type": "edit", "capabilities": ["edit"], "depends_on": ["write"]}
]' >/dev/null

# worker ROLE UPSTREAM: claims its one task (retrying while it is blocked), builds on the
# upstream result, completes it.
worker() {
    local role=$1 upstream=$2 agent="$1-agent" id status input output
    for _ in $(seq 1 600); do
        status=0
        id=$(sl --raw task claim --agent "$agent" 2>/dev/null) || status=$?
        case "$status" in
            0) break ;;
            4) sleep 0.05 ;; # nothing claimable yet: the upstream task is not done
            *) echo "task claim failed with exit $status" >&2; exit "$status" ;;
        esac
    done
    [ -n "${id:-}" ] || { echo "$agent never got a task" >&2; exit 1; }
    if [ "$upstream" = "-" ]; then
        input=$(sl --raw task show "$id" --field parameters)
        output="notes on $input"
    else
        input=$(sl --raw task show "$upstream" --field result)
        output="$role($input)"
    fi
    sl task complete "$id" --agent "$agent" "$output" >/dev/null
    echo "$agent completed $id"
}

worker edit write &
worker write research &
worker research - &
wait_all

sl session complete "$session" --outcome '"published"' >/dev/null
sl session report "$session"
echo "final: $(sl --raw task show edit --field result)"
