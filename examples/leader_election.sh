#!/usr/bin/env bash
# Leader election (SPEC §5, recipe 3): the first agent to create the `leader` cell with a
# "must not exist" compare-and-swap is the leader; everyone else learns who it is.
#
# Usage: leader_election.sh AGENT_ID
# Environment: SWARMLOG (the binary, default `swarmlog` on PATH), SWARMLOG_DB (the data
#   directory, default ./data).
set -euo pipefail

SWARMLOG="${SWARMLOG:-swarmlog}"
DB="${SWARMLOG_DB:-./data}"
AGENT_ID="${1:?usage: leader_election.sh AGENT_ID}"
sl() { "$SWARMLOG" --db "$DB" "$@"; }

status=0
sl state cas leader none "$AGENT_ID" >/dev/null 2>&1 || status=$?
case "$status" in
    0) echo "$AGENT_ID is now the leader" ;;
    3)
        current=$(sl --raw state get leader)
        echo "$AGENT_ID is not the leader (current: $current)"
        ;;
    *)
        echo "swarmlog failed with exit code $status" >&2
        exit "$status"
        ;;
esac
