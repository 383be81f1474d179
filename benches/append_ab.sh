#!/usr/bin/env bash
# Two swarmlog builds A B A B on durable 256-byte appends (POST /v1/events), 32 clients by
# default, the server pinned to core 0 and peerbench to core 1, each run on a fresh data
# directory; one line per run with ops/s, p50/p99 and the server's CPU time per operation
# (utime+stime over the run / operations), then the medians of each build.
#
# usage, from the project root:  bash benches/append_ab.sh BINARY_A BINARY_B [REPS=3] [SECS=8] [CLIENTS=32]
# needs: peerbench built (cargo build --release --manifest-path ../shared/peers/peerbench/Cargo.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: bash benches/append_ab.sh BINARY_A BINARY_B [REPS] [SECS] [CLIENTS]}
b=${2:?usage: bash benches/append_ab.sh BINARY_A BINARY_B [REPS] [SECS] [CLIENTS]}
reps=${3:-3}; secs=${4:-8}; clients=${5:-32}
pb=${PEERBENCH:-../shared/peers/peerbench/target/release/peerbench}
[ -x "$pb" ] || { echo "build peerbench first: cargo build --release --manifest-path ../shared/peers/peerbench/Cargo.toml" >&2; exit 1; }
for exe in "$a" "$b"; do [ -x "$exe" ] || { echo "no swarmlog binary at $exe" >&2; exit 1; }; done
tick=$(getconf CLK_TCK)
body='{"type":"bench.event","stream":"bench/c{client}","data":{"d":"{payload}"}}'
run() { # label binary
    local db port spid c0 c1 res
    db=$(mktemp -d); port=$((20000 + RANDOM % 20000))
    taskset -c 0 "$2" serve --db "$db" --listen "127.0.0.1:$port" >"$db.log" 2>&1 & spid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "$2 did not start; its log:" >&2; cat "$db.log" >&2; exit 1; }
    c0=$(awk '{print $14+$15}' "/proc/$spid/stat")
    res=$(taskset -c 1 "$pb" http-post --url "http://127.0.0.1:$port/v1/events" --clients "$clients" --secs "$secs" --warmup 0 --body "$body")
    c1=$(awk '{print $14+$15}' "/proc/$spid/stat")
    kill -TERM "$spid"; wait "$spid" 2>/dev/null || true; rm -rf "$db" "$db.log"
    python3 -c "import json,sys;d=json.loads(sys.argv[2]);n=max(d['ops_per_s']*$secs,1);print(json.dumps({'build':sys.argv[1],'ops_per_s':round(d['ops_per_s']),'p50_us':d['p50_us'],'p99_us':d['p99_us'],'server_cpu_us_per_op':round(($c1-$c0)/$tick*1e6/n,1)}))" "$1" "$res"
}
out=$(for _ in $(seq "$reps"); do run A "$a"; run B "$b"; done | tee /dev/stderr)
python3 - "$a" "$b" <<PY
import json, statistics, sys
rows = [json.loads(line) for line in """$out""".splitlines()]
for label, exe in (("A", sys.argv[1]), ("B", sys.argv[2])):
    runs = [r for r in rows if r["build"] == label]
    print(f"{label} {exe}: median {statistics.median(r['ops_per_s'] for r in runs):,.0f} ops/s at "
          f"{statistics.median(r['server_cpu_us_per_op'] for r in runs):.1f} µs of server CPU per op ({len(runs)} runs)")
PY
