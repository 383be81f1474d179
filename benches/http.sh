#!/usr/bin/env bash
# Durable HTTP appends of 256-byte events against swarmlog, side by side with Redis XADD
# under `appendfsync always`, with the same closed-loop load generator (peerbench from
# ../shared/peers). Each repetition starts both servers on empty data directories.
#
# usage: bash benches/http.sh [REPS=3] [SECS=10]
# needs: redis-server (apt-get install redis-server), protoc (apt-get install protobuf-compiler)
# for peerbench's build; builds swarmlog in release mode. Prints one JSON line per run and
# a median table at the end; raw lines go to benches/results/http-<timestamp>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
SECS=${2:-10}
PEERS=../shared/peers
PEERBENCH=${PEERBENCH:-target-peer/release/peerbench}
PORT=7171
if [ ! -x "$PEERBENCH" ]; then
  CARGO_TARGET_DIR=target-peer cargo build --release --manifest-path "$PEERS/peerbench/Cargo.toml"
fi
cargo build --release --bin swarmlog
mkdir -p benches/results
OUT=benches/results/http-$(date -u +%Y%m%d-%H%M%S).jsonl
DATA=$(mktemp -d /tmp/swarmlog-bench.XXXXXX)
BODY='{"type":"bench.event","stream":"bench/c{client}","data":{"d":"{payload}"}}'

run() { # label command...
  local label=$1; shift
  "$@" --secs "$SECS" --warmup 2 | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r['label']='$label'; print(json.dumps(r))" | tee -a "$OUT"
}

for rep in $(seq 1 "$REPS"); do
  bash "$PEERS/servers.sh" start redis always >/dev/null
  for clients in 1 32; do
    run "redis-xadd-always/$clients" "$PEERBENCH" redis-xadd --url redis://127.0.0.1:6390 --clients "$clients"
  done
  bash "$PEERS/servers.sh" stop redis >/dev/null

  rm -rf "$DATA"; mkdir -p "$DATA"
  target/release/swarmlog --db "$DATA" serve --listen 127.0.0.1:$PORT >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  for clients in 1 32; do
    run "swarmlog-http-fsync/$clients" "$PEERBENCH" http-post --url "http://127.0.0.1:$PORT/v1/events" --clients "$clients" --body "$BODY"
  done
  kill -TERM "$server"; wait "$server" || true
done
rm -rf "$DATA"

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
labels = sorted({r["label"] for r in rows})
print(f"\n{'run':32} {'ops/s median':>14} {'min-max':>20} {'p50 us':>8} {'p99 us':>8}")
for label in labels:
    runs = [r for r in rows if r["label"] == label]
    ops = [r["ops_per_s"] for r in runs]
    print(f"{label:32} {statistics.median(ops):>14,.0f} {min(ops):>9,.0f}-{max(ops):<9,.0f} "
          f"{statistics.median(r['p50_us'] for r in runs):>8,.0f} {statistics.median(r['p99_us'] for r in runs):>8,.0f}")
PY
