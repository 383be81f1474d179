#!/usr/bin/env bash
# Map-reduce: one map task per chunk of text, a reduce task that depends on every map
# task, and a pool of workers claiming map tasks until none are left. The reduce task
# becomes claimable only when all maps are completed; the reducer sums their results.
# Prints "total words: N".
#
# Usage: map_reduce.sh [WORKERS]
# Environment: SWARMLOG (the binary, default `swarmlog`), SWARMLOG_DB (the data
#   directory; default a fresh temporary one).
set -euo pipefail

SWARMLOG="${SWARMLOG:-swarmlog}"
DB="${SWARMLOG_DB:-$(mktemp -d)}"
WORKERS="${1:-3}"
sl() { "$SWARMLOG" --db "$DB" "$@"; }
# Waits for every background agent and fails if any of them failed.
wait_all() { local pid; for pid in $(jobs -p); do wait "$pid"; done; }

chunks=(
    "the quick brown fox"
    "jumps over the lazy dog"
    "agents share one log"
    "every change is an event"
    "replay rebuilds the state"
    "no task is claimed twice"
)
batch=""
ids=""
for index in "${!chunks[@]}"; do
    batch="$batch{\"id\": \"map-$index\", \"type\": \"map\", \"parameters\": \"${chunks[$index]}\"},"
    ids="$ids\"map-$index\","
done
batch="[$batch {\"id\": \"reduce\", \"type\": \"reduce\", \"depends_on\": [${ids%,}]}]"
sl task create --batch "$batch" >/dev/null

mapper() {
    local agent=$1 id status text
    while true; do
        status=0
        id=$(sl --raw task claim --agent "$agent" --types map 2>/dev/null) || status=$?
        case "$status" in
            0) ;;
            4) return 0 ;; # every map task is taken
            *) echo "task claim failed with exit $status" >&2; exit "$status" ;;
        esac
        text=$(sl --raw task show "$id" --field parameters)
        sl task complete "$id" --agent "$agent" "$(echo "$text" | wc -w | tr -d ' ')" >/dev/null
        echo "$agent mapped $id"
    done
}

for worker in $(seq 1 "$WORKERS"); do
    mapper "mapper-$worker" &
done
wait_all

reduce=$(sl --raw task claim --agent reducer --types reduce)
total=0
for id in $(sl --raw task list --type map --status completed); do
    total=$((total + $(sl --raw task show "$id" --field result)))
done
sl task complete "$reduce" --agent reducer "$total" >/dev/null
echo "total words: $total"
