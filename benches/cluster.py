#!/usr/bin/env python3
"""The cluster on NATS JetStream, side by side in one run (issue 12):

  - durable appends (POST /v1/events, 256-byte payload) with 32 clients through one node,
    and through two nodes (16 clients each: the follower forwards to the writer);
  - JetStream's own publish rate on the same 3-node cluster (peerbench nats-pub, 32 clients,
    an R3 file stream like swarmlog's);
  - the failover time: the writer killed (SIGKILL) to the first acknowledged write through
    the other node, repeated.

Every NATS server runs with `sync_interval: always` (an ack means fsynced on a majority)
and `max_payload: 8MB`, each on its own ports and store in a temporary directory. The rates
alternate (nats, one node, two nodes) REPS times and the medians are printed; nothing is
pinned (three nats-servers, two swarmlog nodes and the load generator share the cores).

usage, from the project root:
  python3 benches/cluster.py [--bin target/release/swarmlog] [--reps 3] [--secs 8] [--failovers 10]
needs: nats-server (SWARMLOG_NATS_SERVER, or target/nats-venv from tests/run-all.sh), peerbench
(PEERBENCH, default ../shared/peers/peerbench/target/release/peerbench), and nats-py, which
this script installs into target/bench-venv on first use to create the R3 stream peerbench
publishes to.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATS_PORTS = [14311, 14312, 14313]
ROUTE_PORTS = [16311, 16312, 16313]
NODE_PORTS = [17071, 17072]
URLS = ",".join(f"nats://127.0.0.1:{port}" for port in NATS_PORTS)
BODY = '{"type":"bench.event","stream":"bench/c{client}","data":{"d":"{payload}"}}'


def nats_binary():
    binary = os.environ.get("SWARMLOG_NATS_SERVER", os.path.join(ROOT, "target/nats-venv/bin/nats-server"))
    if not os.access(binary, os.X_OK):
        sys.exit(f"no nats-server at {binary}: run tests/run-all.sh once, or set SWARMLOG_NATS_SERVER")
    return binary


def bench_python():
    """A venv with nats-py, to create the stream peerbench publishes to."""
    venv = os.path.join(ROOT, "target/bench-venv")
    python = os.path.join(venv, "bin/python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "nats-py==2.9.0"], check=True)
    return python


def start_nats(work):
    processes = []
    routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in ROUTE_PORTS)
    for index, (port, route) in enumerate(zip(NATS_PORTS, ROUTE_PORTS)):
        config = os.path.join(work, f"n{index + 1}.conf")
        with open(config, "w") as file:
            file.write(
                f"server_name: n{index + 1}\nlisten: 127.0.0.1:{port}\nmax_payload: 8MB\n"
                f"jetstream {{ store_dir: {json.dumps(os.path.join(work, f'n{index + 1}'))}, sync_interval: always }}\n"
                f"cluster {{ name: bench, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n"
            )
        log = open(os.path.join(work, f"n{index + 1}.log"), "w")
        processes.append(subprocess.Popen([nats_binary(), "-c", config], stdout=log, stderr=log))
    return processes


def create_r3_stream(python):
    script = f"""
import asyncio, nats
from nats.js.api import StreamConfig, StorageType
async def main():
    for attempt in range(100):
        try:
            nc = await nats.connect("nats://127.0.0.1:{NATS_PORTS[0]}")
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="EVENTS", subjects=["events.>"], storage=StorageType.FILE, num_replicas=3))
            await nc.close()
            return
        except Exception as error:
            last = error
            await asyncio.sleep(0.2)
    raise SystemExit(f"cannot create the EVENTS stream: {{last}}")
asyncio.run(main())
"""
    subprocess.run([python, "-c", script], check=True)


def start_node(binary, work, index, extra=()):
    data = os.path.join(work, f"swarmlog{index}")
    log = open(data + ".log", "a")
    process = subprocess.Popen(
        [binary, "--db", data, "serve", "--listen", f"127.0.0.1:{NODE_PORTS[index]}",
         "--store", URLS, "--nats-stream", "bench", "--node-name", f"node{index}", *extra],
        stdout=log, stderr=log, env={**os.environ, "SWARMLOG_LOG": "warn"},
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{NODE_PORTS[index]}/healthz", timeout=1)
            return process
        except OSError:
            time.sleep(0.05)
    sys.exit(f"swarmlog node {index} did not start; see {data}.log")


def append(index, timeout=30):
    request = urllib.request.Request(
        f"http://127.0.0.1:{NODE_PORTS[index]}/v1/events",
        data=b'{"type":"bench.failover","stream":"failover"}',
        headers={"content-type": "application/json"},
    )
    return urllib.request.urlopen(request, timeout=timeout).status


def writer_index():
    for index in range(2):
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{NODE_PORTS[index]}/metrics", timeout=5).read().decode()
        if f'swarmlog_cluster_writer{{node="node{index}"}} 1' in metrics:
            return index
    return None


def peerbench(args, *extra):
    output = subprocess.run([args.peerbench, *extra, "--secs", str(args.secs), "--warmup", "1"],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def post(args, index, clients):
    return ["http-post", "--url", f"http://127.0.0.1:{NODE_PORTS[index]}/v1/events",
            "--clients", str(clients), "--body", BODY]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(ROOT, "target/release/swarmlog"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--secs", type=float, default=8)
    parser.add_argument("--failovers", type=int, default=10)
    parser.add_argument("--serve-args", default="", help="more `serve` flags for both nodes, e.g. '--sync none'")
    parser.add_argument("--peerbench", default=os.environ.get(
        "PEERBENCH", os.path.join(ROOT, "../shared/peers/peerbench/target/release/peerbench")))
    args = parser.parse_args()
    python = bench_python()
    work = tempfile.mkdtemp(prefix="swarmlog-cluster-bench-")
    nats = start_nats(work)
    nodes = []
    try:
        create_r3_stream(python)
        nodes = [start_node(args.bin, work, 0, args.serve_args.split())]
        time.sleep(1)
        nodes.append(start_node(args.bin, work, 1, args.serve_args.split()))
        rows = {"nats-pub": [], "one node": [], "two nodes": []}
        for rep in range(args.reps):
            rows["nats-pub"].append(peerbench(args, "nats-pub", "--url", f"nats://127.0.0.1:{NATS_PORTS[0]}", "--clients", "32"))
            rows["one node"].append(peerbench(args, *post(args, writer_index(), 32)))
            with tempfile.TemporaryFile("w+") as second:
                other = subprocess.Popen([args.peerbench, *post(args, 1, 16), "--secs", str(args.secs), "--warmup", "1"],
                                         stdout=second, text=True)
                first = peerbench(args, *post(args, 0, 16))
                other.wait()
                second.seek(0)
                forwarded = json.loads(second.read().strip().splitlines()[-1])
            rows["two nodes"].append({"ops_per_s": first["ops_per_s"] + forwarded["ops_per_s"],
                                      "p50_us": max(first["p50_us"], forwarded["p50_us"]),
                                      "p99_us": max(first["p99_us"], forwarded["p99_us"]),
                                      "machine_busy_cores": first.get("machine_busy_cores")})
            for name, runs in rows.items():
                print(json.dumps({"rep": rep, "run": name, **{k: runs[-1].get(k) for k in ("ops_per_s", "p50_us", "p99_us", "machine_busy_cores")}}), flush=True)
        nats_rate = statistics.median(run["ops_per_s"] for run in rows["nats-pub"])
        for name, runs in rows.items():
            rate = statistics.median(run["ops_per_s"] for run in runs)
            p50 = statistics.median(run["p50_us"] for run in runs)
            print(f"{name}: median {rate:,.0f} ops/s, p50 {p50:,.0f} µs, {rate / nats_rate:.2f}× nats-pub ({len(runs)} runs)")

        times = []
        for attempt in range(args.failovers):
            writer = writer_index()
            if writer is None:
                time.sleep(0.5)
                writer = writer_index()
            survivor = 1 - writer
            killed = time.monotonic()
            nodes[writer].send_signal(signal.SIGKILL)
            nodes[writer].wait()
            while True:
                try:
                    if append(survivor) < 300:
                        break
                except OSError:
                    time.sleep(0.01)
            took = time.monotonic() - killed
            times.append(took)
            print(json.dumps({"failover": attempt, "killed": f"node{writer}", "seconds": round(took, 3)}), flush=True)
            nodes[writer] = start_node(args.bin, work, writer, args.serve_args.split())
            time.sleep(0.5)
        if times:
            print(f"failover (writer killed to the first acknowledged write through the other node): "
                  f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s ({len(times)} runs)")
    finally:
        for process in nodes + nats:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
