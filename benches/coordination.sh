#!/usr/bin/env bash
# Issue 11's coordination workloads side by side with Redis, in one command:
#   lock: swarmlog POST /v1/locks/{r}/acquire + /release with the answered token (coordbench lock)
#         against Redis SET NX PX + Lua compare-and-delete (peerbench redis-lock); 2 round trips
#   cas:  swarmlog POST /v1/state/{key}/cas with the version the client tracks (coordbench cas)
#         against one Lua HGET/compare/HSET (peerbench redis-cas); 1 round trip, 256-byte value
# 32 clients, one resource / cell per client (uncontended), the server pinned to core 0 and the
# generator to core 1, REPS x (Redis, then swarmlog) per workload, each run on a fresh server and
# data directory, with the server's CPU time per operation (utime+stime from /proc/PID/stat over
# the generator's run / operations); then a table of medians and swarmlog/Redis ratios.
# Raw lines land in benches/results/coordination-<utc>.jsonl.
#
# usage, from the project root:  bash benches/coordination.sh [REPS=3] [SECS=8]
#   SWARMLOG_BINARY=PATH  another build (default target/release/swarmlog)
#   READ_CAS=1            also swarmlog's read-then-CAS (GET then CAS, 2 round trips)
#   CLIENTS=N             other than 32;  PEERBENCH=PATH  another peerbench
# needs: redis-server (apt-get install redis-server), peerbench (cargo build --release
# --manifest-path ../shared/peers/peerbench/Cargo.toml) and a release swarmlog (cargo build
# --release --bin swarmlog); coordbench is built here in release when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
secs=${2:-8}
clients=${CLIENTS:-32}
peers=../shared/peers
exe=${SWARMLOG_BINARY:-target/release/swarmlog}
pb=${PEERBENCH:-$peers/peerbench/target/release/peerbench}
cb=benches/coordbench/target/release/coordbench

command -v redis-server >/dev/null || { echo "redis-server is not installed: apt-get install redis-server" >&2; exit 1; }
[ -x "$pb" ] || { echo "no peerbench at $pb: build it with cargo build --release --manifest-path $peers/peerbench/Cargo.toml" >&2; exit 1; }
[ -x "$exe" ] || { echo "no swarmlog binary at $exe: build it with cargo build --release --bin swarmlog, or set SWARMLOG_BINARY" >&2; exit 1; }
[ -f "$peers/servers.sh" ] || { echo "no $peers/servers.sh (the shared peers folder must sit beside the project)" >&2; exit 1; }
if [ ! -x "$cb" ]; then
    echo "building coordbench (release) ..." >&2
    cargo build --release --quiet --manifest-path benches/coordbench/Cargo.toml
fi

out=benches/results/coordination-$(date -u +%Y%m%d-%H%M%S).jsonl
mkdir -p benches/results
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
spid=""
db=""
cleanup() {
    [ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
    [ -n "$db" ] && rm -rf "$db"
    bash "$peers/servers.sh" stop redis >/dev/null 2>&1 || true
}
trap cleanup EXIT

# line SYS WORKLOAD REP JSON CPU0 CPU1: one raw line, the server's CPU per op from the two tick counts
line() {
    python3 - "$@" <<PY | tee -a "$out"
import json, sys
sys_, workload, rep, raw, c0, c1 = sys.argv[1:7]
d = json.loads(raw)
ops = max(d.get("ops") or d["ops_per_s"] * $secs, 1)
keep = ("ops", "ops_per_s", "p50_us", "p99_us", "p999_us", "max_us", "errors")
row = {"sys": sys_, "workload": workload, "rep": int(rep), "clients": $clients, "pinned": True, "secs": $secs}
row.update({k: d.get(k) for k in keep})
row["server_cpu_us_per_op"] = round((int(c1) - int(c0)) / $tick * 1e6 / ops, 1)
for k in ("tokens_not_increasing", "versions_not_plus_one", "versions_advanced", "ok_total", "round_trips_per_op"):
    if k in d:
        row[k] = d[k]
print(json.dumps(row))
PY
}

redis_run() { # workload rep
    bash "$peers/servers.sh" start redis always >/dev/null 2>&1 || { echo "redis did not start (bash $peers/servers.sh start redis always)" >&2; exit 1; }
    local rpid; rpid=$(cat /tmp/peers/redis.pid)
    taskset -a -p -c 0 "$rpid" >/dev/null
    local c0 c1 res
    c0=$(cpu "$rpid")
    res=$(taskset -c 1 "$pb" "redis-$1" --url redis://127.0.0.1:6390 --clients "$clients" --secs "$secs" --warmup 0 --size 256)
    c1=$(cpu "$rpid")
    bash "$peers/servers.sh" stop redis >/dev/null 2>&1
    line redis "$1" "$2" "$res" "$c0" "$c1"
}

swarmlog_run() { # workload rep [coordbench flags]
    local workload=$1 rep=$2; shift 2
    db=$(mktemp -d)
    local port=$((20000 + RANDOM % 20000))
    taskset -c 0 "$exe" serve --db "$db" --listen "127.0.0.1:$port" >"$db.log" 2>&1 &
    spid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "swarmlog did not start; its log:" >&2; cat "$db.log" >&2; exit 1; }
    local c0 c1 res
    c0=$(cpu "$spid")
    res=$(taskset -c 1 "$cb" "$@" --url "http://127.0.0.1:$port" --clients "$clients" --secs "$secs" --warmup 0 --size 256)
    c1=$(cpu "$spid")
    kill -TERM "$spid"; wait "$spid" 2>/dev/null || true; spid=""
    rm -rf "$db" "$db.log"; db=""
    line swarmlog "$workload" "$rep" "$res" "$c0" "$c1"
}

for rep in $(seq "$reps"); do
    echo "== rep $rep of $reps: $clients clients, $secs s each, server on core 0, generator on core 1" >&2
    redis_run lock "$rep"
    swarmlog_run lock "$rep" lock
    redis_run cas "$rep"
    swarmlog_run cas "$rep" cas
    if [ "${READ_CAS:-0}" = 1 ]; then
        swarmlog_run read-cas "$rep" cas --read-first
    fi
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
print(f"\nraw: {sys.argv[1]}\n")
print("| workload | system | ops/s (min–max) | p50 µs | p99 µs | server CPU µs/op | runs |")
print("|---|---|---|---|---|---|---|")
med = {}
names = {"lock": "lock cycle (2 round trips)", "cas": "CAS increment (1 round trip)",
         "read-cas": "read-then-CAS (2 round trips)"}
for workload in ("lock", "cas", "read-cas"):
    for system in ("redis", "swarmlog"):
        runs = [r for r in rows if r["sys"] == system and r["workload"] == workload]
        if not runs:
            continue
        m = {k: statistics.median(r[k] for r in runs) for k in ("ops_per_s", "p50_us", "p99_us", "server_cpu_us_per_op")}
        med[(workload, system)] = m
        lo, hi = min(r["ops_per_s"] for r in runs), max(r["ops_per_s"] for r in runs)
        print(f"| {names[workload]} | {system} | {m['ops_per_s']:,.0f} ({lo:,.0f}–{hi:,.0f}) | {m['p50_us']:,.0f} | {m['p99_us']:,.0f} | {m['server_cpu_us_per_op']:.1f} | {len(runs)} |")
print()
for workload, against in (("lock", "lock"), ("cas", "cas"), ("read-cas", "cas")):
    s, r = med.get((workload, "swarmlog")), med.get((against, "redis"))
    if s and r:
        note = " (against Redis's one-round-trip CAS)" if workload != against else ""
        print(f"- {names[workload]}{note}: swarmlog does {s['ops_per_s'] / r['ops_per_s']:.2f}x Redis's throughput "
              f"at {s['server_cpu_us_per_op'] / r['server_cpu_us_per_op']:.2f}x its CPU per op")
bad = [r for r in rows if r.get("errors") or r.get("tokens_not_increasing") or r.get("versions_not_plus_one")]
for r in bad:
    print(f"- check: {r['sys']} {r['workload']} rep {r['rep']}: errors {r.get('errors')}, "
          f"tokens not increasing {r.get('tokens_not_increasing', 0)}, versions not +1 {r.get('versions_not_plus_one', 0)}")
PY
