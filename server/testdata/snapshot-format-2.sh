#!/usr/bin/env bash
# How snapshot-format-2.json was made: a small data directory whose state touches every
# part of the projection (cells, kv, agents, shared locks, tasks pending, blocked,
# claimed, completed and failed, with dependencies, progress, results, an auction,
# findings with evidence, hypotheses, proposals and votes, messages, sessions, a branch),
# then a snapshot, written by the `swarmlog` binary of commit 2dd9247, the last to write
# JSON snapshots (format 2):
#   bash server/testdata/snapshot-format-2.sh BINARY DIR
#   cp DIR/snapshots/snapshot-00000000000000000051.json server/testdata/snapshot-format-2.json
set -euo pipefail
bin=$1 db=$2
call() { "$bin" --db "$db" --json call "$@" >/dev/null; }
call state_set '{"key":"counter","value":3}'
call state_set '{"key":"config","value":{"nested":[1,2.5,"x",null,true],"pi":3.141592653589793}}'
call kv_put '{"key":"k/1","value":"v1"}'
call kv_put '{"key":"k/2","value":null}'
call agent_register '{"id":"w1","type":"worker","capabilities":["rust","py"],"ttl_ms":600000,"meta":{"model":"m"}}'
call agent_register '{"id":"w2","type":"worker","capabilities":["rust"]}'
call agent_register '{"id":"w3","type":"reviewer"}'
call lock_acquire '{"resource":"repo","owner":"w1","ttl_ms":600000}'
call lock_acquire '{"resource":"docs","owner":"w2","ttl_ms":600000,"mode":"shared"}'
call lock_acquire '{"resource":"docs","owner":"w3","ttl_ms":600000,"mode":"shared"}'
call session_start '{"id":"S-1","operation":"investigate","context":{"ticket":7}}'
call task_create '{"tasks":[{"id":"a","type":"build","title":"Build","priority":8,"parameters":{"x":1},"capabilities":["rust"],"session":"S-1"},{"id":"b","type":"test","depends_on":["a"]},{"id":"c","type":"deploy","depends_on":["b"],"requires_approval":true},{"id":"d","type":"build"},{"id":"e","type":"build"},{"id":"f","type":"review","max_attempts":1}]}'
call task_claim '{"agent":"w1","types":["build"]}'
call task_progress '{"task":"a","agent":"w1","percent":50,"note":"half"}'
call task_complete '{"task":"a","agent":"w1","result":{"ok":true,"score":0.75}}'
call task_claim '{"agent":"w2","types":["build"]}'
call task_complete '{"task":"d","agent":"w2"}'
call task_claim '{"agent":"w1","types":["test"]}'
call task_progress '{"task":"b","agent":"w1","percent":10}'
call task_claim '{"agent":"w3","types":["review"]}'
call task_fail '{"task":"f","agent":"w3","error":{"reason":"flaky"}}'
call task_auction '{"task":"e","deadline_ms":3600000,"min_confidence":0.2}'
call task_bid '{"task":"e","agent":"w1","price":3,"estimated_ms":1000,"confidence":0.9}'
call task_bid '{"task":"e","agent":"w2","price":2,"estimated_ms":5000,"confidence":0.5}'
call finding_post '{"id":"F-1","agent":"w1","session":"S-1","category":"observation","content":{"cpu":0.93},"confidence":0.8,"evidence":[{"source":"prometheus","query":"rate(x[5m])","result":[1,2]},{"source":"logs"}],"tags":["cpu","hot"]}'
call finding_post '{"id":"F-2","agent":"w2","category":"conclusion","content":"it is the cache"}'
call hypothesis_propose '{"id":"H-1","description":"cache stampede","confidence":0.5,"session":"S-1"}'
call hypothesis_evidence '{"hypothesis":"H-1","finding":"F-1","supports":true,"weight":2}'
call hypothesis_propose '{"id":"H-2","description":"bad deploy","confidence":0.3}'
call hypothesis_validate '{"hypothesis":"H-2","result":false,"evidence":{"checked":"rollout"}}'
call proposal_open '{"id":"P-1","action":{"rollback":"v2"},"quorum":"majority","deadline_ms":3600000}'
call vote '{"proposal":"P-1","agent":"w1","vote":"yes","confidence":0.9,"reason":"safe"}'
call proposal_open '{"id":"P-2","action":"restart","quorum":"threshold","threshold":0.6,"voters":["w1","w2"],"deadline_ms":3600000}'
call vote '{"proposal":"P-2","agent":"w1","vote":"yes"}'
call vote '{"proposal":"P-2","agent":"w2","vote":"no"}'
call message_send '{"from":"w1","to":"w2","type":"request","payload":{"please":"review"},"requires_ack":true}'
call message_send '{"from":"w2","to":"*","type":"note"}'
call message_ack '{"message":"M-1","agent":"w2"}'
call session_start '{"id":"S-2","operation":"cleanup"}'
call session_complete '{"session":"S-2","outcome":{"ok":1}}'
call agent_deregister '{"agent":"w3"}'
call branch_create '{"name":"experiment"}'
"$bin" --db "$db" --branch experiment --json call state_set '{"key":"counter","value":100}' >/dev/null
"$bin" --db "$db" --json call append_events '{"events":[{"type":"order.placed","stream":"orders/1","data":{"n":1}}]}' >/dev/null
"$bin" --db "$db" --json snapshot
