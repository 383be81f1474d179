#!/usr/bin/env bash
# Issue 11's fair comparison in one command: durable 256-byte appends, swarmlog
# (POST /v1/events) against Redis (XADD, appendfsync always), the same generator
# (../shared/peers/peerbench), A B A B, each server's CPU time per operation, for
#   32 clients with the server on core 0 and the generator on core 1 (pinned),
#   32 clients not pinned, and 1 client pinned;
# then a table of medians and of swarmlog/Redis ratios. Raw lines land in benches/results/.
#
# usage, from the project root:  bash benches/server_cpu.sh [REPS=3] [SECS=8]
# (SWARMLOG_BINARY=PATH measures another build, default target/release/swarmlog)
# needs: redis-server (apt), peerbench built (cargo build --release --manifest-path
# ../shared/peers/peerbench/Cargo.toml), and a release swarmlog (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
secs=${2:-8}
peers=../shared/peers
out=benches/results/server-cpu-$(date -u +%Y%m%d-%H%M%S).jsonl
mkdir -p benches/results
for setting in "1 32" "0 32" "1 1"; do
    read -r pin clients <<<"$setting"
    echo "== pinned=$pin clients=$clients: $reps x A B, $secs s each" >&2
    PIN=$pin bash "$peers/server_cpu.sh" "$reps" "$secs" "$clients" ${SWARMLOG_BINARY:+"$SWARMLOG_BINARY"} | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
print(f"\nraw: {sys.argv[1]}\n")
print("| setting | system | ops/s (min–max) | p50 µs | p99 µs | server CPU µs/op |")
print("|---|---|---|---|---|---|")
ratios = []
for pinned, clients in [(True, 32), (False, 32), (True, 1)]:
    medians = {}
    for system in ("redis", "swarmlog"):
        runs = [r for r in rows if r["sys"] == system and r["pinned"] == pinned and r["clients"] == clients]
        if not runs:
            continue
        med = {k: statistics.median(r[k] for r in runs) for k in ("ops_per_s", "p50_us", "p99_us", "server_cpu_us_per_op")}
        lo, hi = min(r["ops_per_s"] for r in runs), max(r["ops_per_s"] for r in runs)
        medians[system] = med
        setting = f"{clients} client{'s' if clients > 1 else ''}, {'pinned' if pinned else 'not pinned'}"
        print(f"| {setting} | {system} | {med['ops_per_s']:,.0f} ({lo:,}–{hi:,}) | {med['p50_us']:.0f} | {med['p99_us']:.0f} | {med['server_cpu_us_per_op']:.1f} |")
    if len(medians) == 2:
        r, s = medians["redis"], medians["swarmlog"]
        ratios.append(f"{clients} client(s), {'pinned' if pinned else 'not pinned'}: throughput {s['ops_per_s'] / r['ops_per_s']:.2f}x Redis, CPU per op {s['server_cpu_us_per_op'] / r['server_cpu_us_per_op']:.2f}x Redis")
print()
for line in ratios:
    print("- " + line)
PY
