#!/usr/bin/env bash
# A task auction: instead of the first free agent taking the task, the agents that can
# do it bid a price, an estimated duration and a confidence, and at the deadline the
# best bid wins and claims the task. The score (lower wins) is
#   0.4 * price / 100 + 0.3 * estimated hours - 0.3 * confidence
# and bids below min_confidence do not count. Prints "winner: AGENT".
#
# Usage: auction.sh
# Environment: SWARMLOG (the binary, default `swarmlog`), SWARMLOG_DB (the data
#   directory; default a fresh temporary one).
set -euo pipefail

SWARMLOG="${SWARMLOG:-swarmlog}"
DB="${SWARMLOG_DB:-$(mktemp -d)}"
sl() { "$SWARMLOG" --db "$DB" "$@"; }
# Waits for every background agent and fails if any of them failed.
wait_all() { local pid; for pid in $(jobs -p); do wait "$pid"; done; }

for agent in fast-expensive cheap-slow balanced unsure; do
    sl agent register "$agent" --type translator --capabilities translate >/dev/null
done
sl task create translate --id translate-manual --capabilities translate \
    --parameters '{"pages": 40, "to": "de"}' >/dev/null
sl task auction translate-manual --deadline-ms 1000 --min-confidence 0.6 >/dev/null

# Bids arrive in parallel. Scores: fast-expensive 0.8+0.15-0.27=0.68,
# cheap-slow 0.08+0.9-0.24=0.74, balanced 0.24+0.3-0.255=0.285, unsure: below 0.6.
sl task bid translate-manual --agent fast-expensive --price 200 --estimated-ms 1800000 --confidence 0.9 >/dev/null &
sl task bid translate-manual --agent cheap-slow --price 20 --estimated-ms 10800000 --confidence 0.8 >/dev/null &
sl task bid translate-manual --agent balanced --price 60 --estimated-ms 3600000 --confidence 0.85 >/dev/null &
sl task bid translate-manual --agent unsure --price 1 --estimated-ms 600000 --confidence 0.3 >/dev/null &
wait_all

# The server awards the task at the deadline; each command lets the timers run.
for _ in $(seq 1 200); do
    [ "$(sl --raw task show translate-manual)" = "claimed" ] && break
    sleep 0.05
done
winner=$(sl --raw task show translate-manual --field agent)
sl task complete translate-manual --agent "$winner" '"Handbuch übersetzt"' >/dev/null
echo "winner: $winner"
