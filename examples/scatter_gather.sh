#!/usr/bin/env bash
# Scatter-gather where the first valid result wins: the same question goes to several
# solver tasks at once, one assigned to each solver; each answers in its own time, some
# wrongly. The first valid answer is published with a compare-and-swap on the `answer`
# cell (it must not exist yet), so exactly one solver wins; the winner cancels the tasks
# still running, and everyone hears about it through a broadcast. Prints
# "winner: AGENT answer: VALUE".
#
# Usage: scatter_gather.sh [SOLVERS]
# Environment: SWARMLOG (the binary, default `swarmlog`), SWARMLOG_DB (the data
#   directory; default a fresh temporary one).
set -euo pipefail

SWARMLOG="${SWARMLOG:-swarmlog}"
DB="${SWARMLOG_DB:-$(mktemp -d)}"
SOLVERS="${1:-4}"
sl() { "$SWARMLOG" --db "$DB" "$@"; }
# Waits for every background agent and fails if any of them failed.
wait_all() { local pid; for pid in $(jobs -p); do wait "$pid"; done; }

sl agent register gatherer --type coordinator >/dev/null
for n in $(seq 1 "$SOLVERS"); do
    sl agent register "solver-$n" --type solver >/dev/null
    sl task create solve --id "solve-$n" --parameters '"6 * 7"' >/dev/null
    # Scatter: the gatherer hands each solver its own copy of the question.
    sl task assign "solve-$n" --agent "solver-$n" >/dev/null
done

solver() {
    local n=$1 agent="solver-$1" id="solve-$1" answer status
    # Solver 1 is fast and wrong; the others are right after some thinking.
    if [ "$n" -eq 1 ]; then
        answer="NaN"
    else
        sleep "0.$((n * 7 % 5))"
        answer=$((6 * 7))
    fi
    case "$answer" in
        '' | *[!0-9]*)
            sl task fail "$id" --agent "$agent" "\"invalid answer $answer\"" >/dev/null
            return 0
            ;;
    esac
    status=0
    sl state cas answer none "\"$agent:$answer\"" >/dev/null 2>&1 || status=$?
    case "$status" in
        0)
            sl task complete "$id" --agent "$agent" "$answer" >/dev/null
            for other in $(sl --raw task list --status claimed) $(sl --raw task list --status pending); do
                sl task cancel "$other" --reason "answered by $agent" >/dev/null 2>&1 || true
            done
            sl message send --from "$agent" --to '*' answered "$answer" >/dev/null
            ;;
        3) # Someone was first: this answer is late. Our task may be cancelled already.
            sl task complete "$id" --agent "$agent" '"late"' >/dev/null 2>&1 || true
            ;;
        *) exit "$status" ;;
    esac
}

for n in $(seq 1 "$SOLVERS"); do
    solver "$n" &
done
wait_all

winner=$(sl --raw state get answer)
echo "winner: ${winner%%:*} answer: ${winner#*:}"
echo "gatherer heard: $(sl --raw message inbox gatherer --field payload)"
