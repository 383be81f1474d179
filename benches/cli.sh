#!/usr/bin/env bash
# CLI latency (issue 3: "a CLI call on a small log must feel instant"): the wall-clock time
# of whole `swarmlog --db DIR ...` processes on a small log with no server, i.e. start the
# process, open and recover the log under the directory lock, decide, append with fsync,
# close. Prints the median and the 90th percentile of each command in milliseconds.
#
# Usage: benches/cli.sh [RUNS]   (default 50 runs per command)
# Environment: SWARMLOG, the binary (default: target/release/swarmlog, built if missing).
# Uses hyperfine when it is installed, else a plain loop timed with `date +%s%N`.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS="${1:-50}"
if [ -z "${SWARMLOG:-}" ]; then
    cargo build --release --quiet --bin swarmlog
    SWARMLOG="$PWD/target/release/swarmlog"
fi
DB="$(mktemp -d)"
trap 'rm -rf "$DB"' EXIT
sl() { "$SWARMLOG" --db "$DB" "$@"; }

# A small log: 100 events of cells, kv, a lock and an agent.
sl state init counter 0 >/dev/null
for i in $(seq 1 90); do sl kv put "key:$i" "value $i" >/dev/null; done
sl agent register agent-1 --type worker >/dev/null
TOKEN=$(sl --raw lock acquire db --owner agent-1 --ttl-ms 3600000)
for i in $(seq 1 7); do sl state set counter "$i" >/dev/null; done
echo "log: $(sl --raw stats) events in $DB"

measure() {
    local name="$1"
    shift
    local -a times=()
    for _ in $(seq 1 "$RUNS"); do
        local start end
        start=$(date +%s%N)
        "$@" >/dev/null 2>&1 || true
        end=$(date +%s%N)
        times+=($(((end - start) / 1000)))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v name="$name" '
        { t[NR] = $1 }
        END {
            median = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
            p90 = t[int(NR * 0.9 + 0.5)]
            printf "%-34s median %6.2f ms   p90 %6.2f ms   (%d runs)\n", name, median / 1000, p90 / 1000, NR
        }'
}

if command -v hyperfine >/dev/null 2>&1; then
    hyperfine --warmup 3 --runs "$RUNS" -N \
        "$SWARMLOG --db $DB --raw state get counter" \
        "$SWARMLOG --db $DB kv put bench:key value" \
        "$SWARMLOG --db $DB lock renew db --owner agent-1 --fencing-token $TOKEN --ttl-ms 3600000"
else
    measure "state get (read)" sl --raw state get counter
    measure "kv put (write + fsync)" sl kv put bench:key value
    measure "state get + state cas (2 calls)" bash -c "v=\$(\"$SWARMLOG\" --db \"$DB\" --json state get counter | sed -n 's/.*\"version\":\([0-9]*\).*/\1/p'); \"$SWARMLOG\" --db \"$DB\" state cas counter \"\$v\" 1"
    measure "lock acquire + release (2 calls)" bash -c "t=\$(\"$SWARMLOG\" --db \"$DB\" --raw lock acquire bench --owner agent-1 --ttl-ms 60000) && \"$SWARMLOG\" --db \"$DB\" lock release bench --owner agent-1 --fencing-token \"\$t\""
fi
