#!/usr/bin/env bash
# Issue 11's SSE fan-out: SUBSCRIBERS streams on GET /v1/events (Accept: text/event-stream,
# from the head on, types=bench.fanout) while writers append RATE events/s, open loop, in
# batches; every subscriber must get every event exactly once, and the delivery latency
# (receive time - the writer's send time, one clock in one process) should stay p99 <= 50 ms.
# A fresh release swarmlog runs pinned to core 0, coordbench sse-fanout on core 1; the server's
# CPU and the generator's own are reported, since on 2 cores they compete.
# Prints coordbench's JSON line (also appended to benches/results/sse-fanout-<utc>.jsonl) and a
# one-paragraph summary.
#
# usage, from the project root:  bash benches/sse_fanout.sh [SUBSCRIBERS=1000] [RATE=5000] [SECS=10]
#   SWARMLOG_BINARY=PATH  another build (default target/release/swarmlog)
#   BATCH=10 WRITERS=4    events per POST and writer connections
#   WARMUP=2 DRAIN=10     seconds written before latencies count; seconds allowed to catch up after
#   SIZE=256              payload bytes per event;  STOP_EARLY=N  N subscribers hang up halfway
# coordbench is built here in release when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
subscribers=${1:-1000}
rate=${2:-5000}
secs=${3:-10}
batch=${BATCH:-10}
writers=${WRITERS:-4}
exe=${SWARMLOG_BINARY:-target/release/swarmlog}
cb=benches/coordbench/target/release/coordbench
[ -x "$exe" ] || { echo "no swarmlog binary at $exe: build it with cargo build --release --bin swarmlog, or set SWARMLOG_BINARY" >&2; exit 1; }
if [ ! -x "$cb" ]; then
    echo "building coordbench (release) ..." >&2
    cargo build --release --quiet --manifest-path benches/coordbench/Cargo.toml
fi
out=benches/results/sse-fanout-$(date -u +%Y%m%d-%H%M%S).jsonl
mkdir -p benches/results

# The server refuses connections past --max-connections (default 1024) with 503; subscribers,
# writers and one probe must fit, so raise it only when they would not.
need=$((subscribers + writers + 16))
extra=()
if [ "$need" -gt 1024 ]; then
    extra=(--max-connections "$need")
    echo "passing --max-connections $need to the server (default 1024)" >&2
fi
# Likewise subscriptions past --max-subscribers (default 1000) are refused with 503.
if [ "$subscribers" -gt 1000 ]; then
    extra+=(--max-subscribers "$subscribers")
    echo "passing --max-subscribers $subscribers to the server (default 1000)" >&2
fi

db=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
taskset -c 0 "$exe" serve --db "$db" --listen "127.0.0.1:$port" "${extra[@]}" >"$db.log" 2>&1 &
spid=$!
trap 'kill -TERM $spid 2>/dev/null; wait $spid 2>/dev/null; rm -rf "$db" "$db.log"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "swarmlog did not start; its log:" >&2; cat "$db.log" >&2; exit 1; }

res=$(taskset -c 1 "$cb" sse-fanout --url "http://127.0.0.1:$port" --server-pid "$spid" \
    --subscribers "$subscribers" --rate "$rate" --secs "$secs" --warmup "${WARMUP:-2}" \
    --batch "$batch" --writers "$writers" --drain "${DRAIN:-10}" --size "${SIZE:-256}" \
    --stop-early "${STOP_EARLY:-0}" --label "max_connections=${extra[1]:-1024}")
echo "$res" | tee -a "$out"
python3 - "$res" "$out" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
n, followers = d["subscribers"], d["subscribers"] - d["stopped_early"]
ok = d["subscribers_complete"] == followers and d["p99_us"] <= 50_000 and d["errors"] == 0
print(f"\nraw: {sys.argv[2]}\n")
print(
    f"{d['subscribers_caught_up']:,} of {n:,} subscribers were following GET /v1/events "
    f"({d['subscribe_errors']} refused; all caught up {d['subscribe_s']:.2f} s after the first connect) "
    f"while {d['writers']} writers appended {d['events_written']:,} of the {d['events_scheduled']:,} events scheduled, "
    f"in batches of {d['batch']}, at {d['written_per_s']:,.0f}/s of the {d['rate']:,.0f}/s asked "
    f"(at worst {d['writer_max_lag_ms']:,.0f} ms behind their schedule; the writing stops on time, so writers that fall behind send fewer events; {d['errors']} failed appends). "
    f"{d['subscribers_complete']:,} of {followers:,} subscribers got every event exactly once; "
    f"{d['lost']:,} events were skipped (lost), {d['undelivered_at_end']:,} had not arrived "
    f"{d['drain_s']:.1f} s after the writing stopped ({d['subscribers_behind_at_end']:,} subscribers still behind), "
    f"{d['duplicates']:,} arrived twice"
    + (f", and the {d['stopped_early']} subscribers that hung up halfway missed {d['missing_stopped_early']:,}" if d["stopped_early"] else "")
    + f". Delivery latency (receive - send) over {d['latency_samples']:,} deliveries: "
    f"p50 {d['p50_us'] / 1000:,.1f} ms, p99 {d['p99_us'] / 1000:,.1f} ms, max {d['max_us'] / 1000:,.1f} ms "
    f"(target: every event to every subscriber, p99 <= 50 ms: {'met' if ok else 'not met'}). "
    f"The server used {d.get('server_cores', float('nan')):.2f} cores ({d.get('server_cpu_us_per_event', float('nan')):,.1f} µs per event written, "
    f"{d.get('server_cpu_us_per_delivery', float('nan')):.2f} µs per delivery), the generator {d['client_cores']:.2f} cores, "
    f"the machine {d['machine_busy_cores']:.2f} of 2; {d['deliveries_per_s']:,.0f} deliveries/s, "
    f"{d['received_mb_per_s']:,.1f} MB/s of SSE received."
)
PY
