"""Batch ingest (issue 11): EVENTS events of about 300 bytes, posted as atomic batches of
1,000 (`{"events": [...]}`) over CONNECTIONS keep-alive connections, against a fresh
`swarmlog serve`; events/s over the whole load, each batch answered only once durable, and
the server's CPU time (utime + stime) per event.

Runs the load twice on fresh servers: with the full answer (every envelope echoed) and
with `Prefer: return=minimal` ({seq, count}), and prints both as JSON lines.
Standard library only; run it from the project root with a release build:

    cargo build --release
    python3 benches/batch_ingest.py --bin target/release/swarmlog --events 1000000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
import swarmlog_server  # noqa: E402

BATCH = 1000


def batch_body(connection: int, number: int) -> bytes:
    payload = "x" * 200
    events = [{"type": "ingest.record", "stream": f"ingest/{(connection * 7 + n) % 1000}",
               "data": {"n": number * BATCH + n, "payload": payload}} for n in range(BATCH)]
    return json.dumps({"events": events}).encode()


def cpu_secs(pid: int) -> float:
    """utime + stime of process `pid` so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, pid: int, events: int, connections: int, minimal: bool) -> dict:
    address = urlparse(url)
    batches = events // BATCH
    per_connection = [batches // connections + (1 if c < batches % connections else 0) for c in range(connections)]
    bodies = [batch_body(c, 0) for c in range(connections)]  # one body per connection, sent again and again
    headers = {"Content-Type": "application/json"}
    if minimal:
        headers["Prefer"] = "return=minimal"
    answered_bytes = [0] * connections
    failures: list[str] = []

    def run(c: int) -> None:
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
        for _ in range(per_connection[c]):
            conn.request("POST", "/v1/events", body=bodies[c], headers=headers)
            response = conn.getresponse()
            body = response.read()
            answered_bytes[c] += len(body)
            if response.status != 201:
                failures.append(f"{response.status}: {body[:200]!r}")
                return
        conn.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(connections)]
    started, cpu_before = time.monotonic(), cpu_secs(pid)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.monotonic() - started, cpu_secs(pid) - cpu_before
    if failures:
        raise SystemExit(f"refused: {failures[0]}")
    sent = sum(per_connection) * BATCH
    return {"prefer_minimal": minimal, "events": sent, "connections": connections, "secs": round(elapsed, 2),
            "events_per_s": round(sent / elapsed), "server_cpu_us_per_event": round(cpu / sent * 1e6, 2),
            "answer_bytes_per_batch": round(sum(answered_bytes) / sum(per_connection))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=str(REPO / "target" / "release" / "swarmlog"))
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    swarmlog_server.BIN = str(Path(args.bin).resolve())
    for minimal in (False, True):
        work = Path(tempfile.mkdtemp(prefix="ingest-"))
        (work / "data").mkdir()
        server = swarmlog_server.Server(work / "data", [], work / "serve.log")
        try:
            print(json.dumps(load(server.url, server.proc.pid, args.events, args.connections, minimal)), flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
