#!/usr/bin/env bash
# A pipeline of stages (extract -> transform -> load): every item is a chain of three
# tasks, and one worker per stage processes its stage's tasks as soon as the item's
# previous stage is completed, so the stages overlap like an assembly line. The load
# stage stores each record in kv. Prints "loaded N records".
#
# Usage: pipeline.sh [ITEMS]
# Environment: SWARMLOG (the binary, default `swarmlog`), SWARMLOG_DB (the data
#   directory; default a fresh temporary one).
set -euo pipefail

SWARMLOG="${SWARMLOG:-swarmlog}"
DB="${SWARMLOG_DB:-$(mktemp -d)}"
ITEMS="${1:-4}"
sl() { "$SWARMLOG" --db "$DB" "$@"; }
# Waits for every background agent and fails if any of them failed.
wait_all() { local pid; for pid in $(jobs -p); do wait "$pid"; done; }

batch=""
for item in $(seq 1 "$ITEMS"); do
    batch="$batch{\"id\": \"extract-$item\", \"type\": \"extract\"},"
    batch="$batch{\"id\": \"transform-$item\", \"type\": \"transform\", \"depends_on\": [\"extract-$item\"]},"
    batch="$batch{\"id\": \"load-$item\", \"type\": \"load\", \"depends_on\": [\"transform-$item\"]},"
done
sl task create --batch "[${batch%,}]" >/dev/null

# stage NAME: processes NAME tasks until ITEMS of them are completed.
stage() {
    local name=$1 agent="$1-worker" id status item input done_count rounds=0
    while true; do
        rounds=$((rounds + 1))
        if [ "$rounds" -gt 2000 ]; then
            echo "$agent gave up: the pipeline does not move" >&2
            exit 1
        fi
        done_count=$(sl --raw task list --type "$name" --status completed | wc -l | tr -d ' ')
        [ "$done_count" -ge "$ITEMS" ] && return 0
        status=0
        id=$(sl --raw task claim --agent "$agent" --types "$name" 2>/dev/null) || status=$?
        case "$status" in
            0) ;;
            4) sleep 0.05; continue ;; # the next item is not through the previous stage yet
            *) echo "task claim failed with exit $status" >&2; exit "$status" ;;
        esac
        item=${id#*-}
        case "$name" in
            extract) output="record-$item" ;;
            transform)
                input=$(sl --raw task show "extract-$item" --field result)
                output=$(echo "$input" | tr '[:lower:]' '[:upper:]')
                ;;
            load)
                input=$(sl --raw task show "transform-$item" --field result)
                sl kv put "loaded:$item" "$input" >/dev/null
                output="stored"
                ;;
        esac
        sl task complete "$id" --agent "$agent" "$output" >/dev/null
        echo "$agent: $id -> $output"
    done
}

stage load &
stage transform &
stage extract &
wait_all

echo "loaded $(sl --raw task list --type load --status completed | wc -l | tr -d ' ') records"
echo "first record: $(sl --raw kv get loaded:1)"
