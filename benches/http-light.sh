#!/usr/bin/env bash
# Durable appends of 256-byte events with light C load generators on both sides: wrk
# (closed loop, one thread, 32 connections) POSTing to swarmlog's /v1/events, and
# redis-benchmark (32 clients) doing XADD against Redis with `appendfsync always`.
# peerbench (benches/http.sh) is the same generator for both, but its HTTP client costs
# about 30 µs of CPU per request on this 2-core machine, which then caps what a server can
# show; this run shows the servers with the generator's cost mostly out of the way.
#
# usage: bash benches/http-light.sh [REPS=3] [SECS=10]
# needs: wrk and redis-server (apt-get install wrk redis-server); builds swarmlog in release.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
SECS=${2:-10}
PEERS=../shared/peers
PORT=7171
cargo build --release --bin swarmlog
mkdir -p benches/results
OUT=benches/results/http-light-$(date -u +%Y%m%d-%H%M%S).jsonl
DATA=$(mktemp -d /tmp/swarmlog-bench.XXXXXX)
PAYLOAD=$(printf 'x%.0s' $(seq 1 256))
LUA=$(mktemp /tmp/swarmlog-wrk.XXXXXX.lua)
cat >"$LUA" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"bench.event","stream":"bench/wrk","data":{"d":"$PAYLOAD"}}'
done = function(summary, latency, requests)
  io.write(string.format('{"ops_per_s": %.1f, "p50_us": %d, "p99_us": %d, "errors": %d}\n',
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write))
end
LUA

record() { # label json
  python3 -c "import json,sys; r=json.loads(sys.argv[2]); r['label']=sys.argv[1]; print(json.dumps(r))" "$1" "$2" | tee -a "$OUT"
}

for rep in $(seq 1 "$REPS"); do
  bash "$PEERS/servers.sh" start redis always >/dev/null
  line=$(redis-benchmark -p 6390 -c 32 -n $((SECS * 35000)) --csv XADD bench '*' d "$PAYLOAD" | tail -1)
  record redis-benchmark-xadd-always/32 "$(python3 -c "import csv,io,json,sys; r=next(csv.reader(io.StringIO(sys.argv[1]))); print(json.dumps({'ops_per_s': float(r[1]), 'p50_us': float(r[4])*1000, 'p99_us': float(r[6])*1000}))" "$line")"
  bash "$PEERS/servers.sh" stop redis >/dev/null

  rm -rf "$DATA"; mkdir -p "$DATA"
  target/release/swarmlog --db "$DATA" serve --listen 127.0.0.1:$PORT >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  record wrk-swarmlog-http-fsync/32 "$(wrk -t1 -c32 -d"${SECS}s" -s "$LUA" "http://127.0.0.1:$PORT/v1/events" | tail -1)"
  kill -TERM "$server"; wait "$server" || true
done
rm -rf "$DATA" "$LUA"

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"\n{'run':32} {'ops/s median':>14} {'min-max':>20} {'p50 us':>8} {'p99 us':>8}")
for label in sorted({r["label"] for r in rows}):
    runs = [r for r in rows if r["label"] == label]
    ops = [r["ops_per_s"] for r in runs]
    print(f"{label:32} {statistics.median(ops):>14,.0f} {min(ops):>9,.0f}-{max(ops):<9,.0f} "
          f"{statistics.median(r['p50_us'] for r in runs):>8,.0f} {statistics.median(r['p99_us'] for r in runs):>8,.0f}")
PY
