#!/usr/bin/env bash
# State reads under durable appends, two swarmlog builds A B A B: 32 clients append 256-byte
# events (POST /v1/events, fsync) while 1 client reads a state cell (GET /v1/state/bench-read)
# in a closed loop; the server pinned to core 0 and coordbench to core 1, each run on a fresh
# data directory. One JSON line per run (appends: ops_per_s, p50_us, p99_us; reads: read_*),
# then the medians of each build.
#
# usage, from the project root:  bash benches/reads_ab.sh BINARY_A BINARY_B [REPS=3] [SECS=8] [CLIENTS=32]
#   TASKS=N        create N tasks before the run (a large state: what the engine copies)
#   READ_PATH=P    read P instead of the cell (e.g. /v1/tasks)
#   READERS=N      reading clients (default 1)
#   READ_INTERVAL_US=N  each reader reads at most every N µs (default 0: back to back; a
#                  build whose reads answer faster then also reads more often, taking
#                  more of the server's core from the appends)
# Raw lines land in benches/results/reads-<utc>.jsonl; the metrics of each "after" run
# (reads by path, state copies) go to stderr.
# coordbench is built here in release when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: bash benches/reads_ab.sh BINARY_A BINARY_B [REPS] [SECS] [CLIENTS]}
b=${2:?usage: bash benches/reads_ab.sh BINARY_A BINARY_B [REPS] [SECS] [CLIENTS]}
reps=${3:-3}; secs=${4:-8}; clients=${5:-32}
cb=benches/coordbench/target/release/coordbench
for exe in "$a" "$b"; do [ -x "$exe" ] || { echo "no swarmlog binary at $exe" >&2; exit 1; }; done
if [ ! -x "$cb" ]; then
    echo "building coordbench (release) ..." >&2
    cargo build --release --quiet --manifest-path benches/coordbench/Cargo.toml
fi
run() { # label binary
    local db port spid
    db=$(mktemp -d); port=$((20000 + RANDOM % 20000))
    taskset -c 0 "$2" serve --db "$db" --listen "127.0.0.1:$port" >"$db.log" 2>&1 & spid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "$2 did not start; its log:" >&2; cat "$db.log" >&2; exit 1; }
    taskset -c 1 "$cb" read-under-append --url "http://127.0.0.1:$port" --clients "$clients" \
        --readers "${READERS:-1}" --read-path "${READ_PATH:-/v1/state/bench-read}" --tasks "${TASKS:-0}" \
        --read-interval-us "${READ_INTERVAL_US:-0}" \
        --secs "$secs" --warmup 1 --label "$1" --server-pid "$spid"
    curl -sf "http://127.0.0.1:$port/metrics" | grep -E '^swarmlog_(reads_total|state_publications_total)' | tr '\n' ' ' >&2 || true
    echo >&2
    kill -TERM "$spid"; wait "$spid" 2>/dev/null || true; rm -rf "$db" "$db.log"
}
mkdir -p benches/results
raw=benches/results/reads-$(date -u +%Y%m%d-%H%M%S).jsonl
for _ in $(seq "$reps"); do run A "$a"; run B "$b"; done | tee "$raw"
out=$(cat "$raw")
python3 - "$a" "$b" <<PY
import json, statistics, sys
rows = [json.loads(line) for line in """$out""".splitlines()]
med = lambda runs, key: statistics.median(r[key] for r in runs)
for label, exe in (("A", sys.argv[1]), ("B", sys.argv[2])):
    runs = [r for r in rows if r["label"] == label]
    print(f"{label} {exe} ({len(runs)} runs, medians): reads {med(runs, 'read_ops_per_s'):,.0f}/s "
          f"p50 {med(runs, 'read_p50_us'):,.0f} µs p99 {med(runs, 'read_p99_us'):,.0f} µs; "
          f"appends {med(runs, 'ops_per_s'):,.0f}/s p50 {med(runs, 'p50_us'):,.0f} µs p99 {med(runs, 'p99_us'):,.0f} µs; "
          f"errors {sum(r['errors'] for r in runs)}")
PY
