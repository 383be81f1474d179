#!/usr/bin/env bash
# A parallel investigation on the blackboard that ends in a vote on a rollback.
#
# Three investigators look at an incident at the same time and post findings to the
# session's blackboard. Two hypotheses are proposed; each finding is attached to them as
# supporting or refuting evidence, which moves their confidence (see docs/api.md). The
# most confident hypothesis leads to a rollback proposal, the investigators vote
# (majority), and an approved rollback becomes a task that waits for a human approval.
# Prints "top hypothesis: ..." and "decision: ...".
#
# Usage: investigation.sh [INCIDENT]
# Environment: SWARMLOG (the binary, default `swarmlog`), SWARMLOG_DB (the data
#   directory; default a fresh temporary one).
set -euo pipefail

SWARMLOG="${SWARMLOG:-swarmlog}"
DB="${SWARMLOG_DB:-$(mktemp -d)}"
INCIDENT="${1:-INC-1234}"
sl() { "$SWARMLOG" --db "$DB" "$@"; }
# Waits for every background agent and fails if any of them failed.
wait_all() { local pid; for pid in $(jobs -p); do wait "$pid"; done; }

session=$(sl --raw session start "investigate $INCIDENT" --id "$INCIDENT")
for agent in deploy-validator metrics-analyst log-reader; do
    sl agent register "$agent" --type investigator >/dev/null
done

# In parallel: every investigator reports what it sees.
sl finding post --agent deploy-validator --session "$session" --tag deploy --confidence 0.95 \
    --id F-deploy '"deployment v1.2.3 at 10:15 UTC"' >/dev/null &
sl finding post --agent metrics-analyst --session "$session" --tag db --confidence 0.9 \
    --id F-pool --evidence '[{"source": "prometheus", "query": "db_pool_in_use", "result": 100}]' \
    '"connection pool at 100% since 10:16"' >/dev/null &
sl finding post --agent log-reader --session "$session" --tag memory --confidence 0.8 \
    --id F-memory '"heap flat, no OOM kills"' >/dev/null &
wait_all

pool=$(sl --raw hypothesis propose "database connection pool exhaustion from v1.2.3" --confidence 0.5 --session "$session" --id H-pool)
leak=$(sl --raw hypothesis propose "memory leak in the new feature" --confidence 0.4 --session "$session" --id H-leak)
sl hypothesis evidence "$pool" --finding F-deploy >/dev/null
sl hypothesis evidence "$pool" --finding F-pool --weight 2 >/dev/null
sl hypothesis evidence "$leak" --finding F-memory --refutes >/dev/null
sl hypothesis list --session "$session"
top=$(sl --raw hypothesis list --session "$session" --field description | sed -n 1p)
echo "top hypothesis: $top"

proposal=$(sl --raw proposal open '{"rollback": "v1.2.3"}' --quorum majority \
    --voters deploy-validator,metrics-analyst,log-reader --deadline-ms 60000)
# The log reader abstains; then the other two vote at the same time. The second yes
# settles the majority, so the server decides the proposal right then.
sl proposal vote "$proposal" --agent log-reader abstain --reason "nothing in the logs" >/dev/null
sl proposal vote "$proposal" --agent metrics-analyst yes --confidence 0.9 --reason "pool exhaustion started with the deploy" >/dev/null &
sl proposal vote "$proposal" --agent deploy-validator yes --reason "v1.2.2 was healthy" >/dev/null &
wait_all
decision=$(sl --raw proposal show "$proposal")
echo "decision: $decision"

if [ "$decision" = "approved" ]; then
    sl task create rollback --id rollback-v1.2.3 --session "$session" --requires-approval \
        --parameters '{"to": "v1.2.2"}' >/dev/null
    echo "rollback task: $(sl --raw task show rollback-v1.2.3) (a human runs: swarmlog task approve rollback-v1.2.3)"
fi
sl session complete "$session" --outcome "\"$decision\"" >/dev/null
