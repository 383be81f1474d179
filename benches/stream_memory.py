"""Memory and start-up as the history grows (issue 11): builds a log of EVENTS events of
about 300 bytes over 1,000 streams with a release server (atomic batches of 1,000,
`Prefer: return=minimal`, over CONNECTIONS keep-alive connections), samples the server's
RSS (VmRSS, and its anonymous and file-backed parts, from /proc/PID/status) at every
million events and at the end, then restarts it twice, after SIGTERM (a clean shutdown,
which writes a snapshot) and after SIGKILL, and measures how long it takes until /healthz
answers, its RSS then, and the sizes of the snapshot, the stream index and the log. It
also times stream reads after the first restart (the median of nine pages of 100 events
from the middle of nine streams, and of three whole streams), and reads the RSS again after
them: reads map the log's segments, whose pages then count as the process's too.

Prints one JSON line per sample and a summary line. Standard library only; run it from the
project root with a release build, on a disk with room for the log (about 430 bytes per
event: 4.3 GB for 10M):

    cargo build --release
    python3 benches/stream_memory.py --bin target/release/swarmlog --events 1000000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
BATCH = 1000
STREAMS = 1000
MILLION = 1_000_000


def batch_body(connection: int) -> bytes:
    """One batch, sent again and again by a connection: 1,000 events on 1,000 streams."""
    payload = "x" * 200
    events = [{"type": "ingest.record", "stream": f"ingest/{(connection * 7 + n) % STREAMS}",
               "data": {"n": n, "payload": payload}} for n in range(BATCH)]
    return json.dumps({"events": events}).encode()


def memory(pid: int) -> dict:
    """VmRSS, RssAnon, RssFile and VmHWM of a process, in MiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


def start(binary: str, data: Path, log: Path) -> tuple[subprocess.Popen, str, float]:
    """Starts `swarmlog serve` on DATA; returns it, its URL and the seconds until /healthz
    answered (polled every 2 ms)."""
    address = data / "server.addr"
    if address.exists():
        address.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLOG_")}
    env["SWARMLOG_LOG"] = "info"
    started = time.monotonic()
    process = subprocess.Popen([binary, "serve", "--db", str(data), "--listen", "127.0.0.1:0"],
                               stdout=subprocess.DEVNULL, stderr=open(log, "a"), env=env)
    while True:
        if process.poll() is not None:
            raise SystemExit(f"swarmlog serve exited with {process.returncode}; see {log}")
        try:
            url = address.read_text().splitlines()[0].strip()
            target = urlparse(url)
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=5)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return process, url, time.monotonic() - started
        except (OSError, IndexError, http.client.HTTPException):
            pass
        if time.monotonic() - started > 600:
            raise SystemExit("swarmlog serve did not answer within 600 s")
        time.sleep(0.002)


def load(url: str, events: int, connections: int, pid: int, samples: list) -> float:
    """Posts EVENTS events; records the server's memory at every million; returns seconds."""
    target = urlparse(url)
    batches = events // BATCH
    done = [0]
    lock = threading.Lock()
    failures: list[str] = []
    next_sample = [MILLION]

    def run(c: int) -> None:
        body = batch_body(c)
        headers = {"Content-Type": "application/json", "Prefer": "return=minimal"}
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
        while not failures:
            with lock:
                if done[0] >= batches:
                    return
                done[0] += 1
            connection.request("POST", "/v1/events", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 201:
                failures.append(f"{response.status}: {answer[:200]!r}")
                return
            seq = json.loads(answer)["seq"]
            with lock:
                if seq >= next_sample[0]:
                    next_sample[0] += MILLION
                    sample = {"events": seq, **memory(pid)}
                    samples.append(sample)
                    print(json.dumps(sample), flush=True)

    threads = [threading.Thread(target=run, args=(c,)) for c in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"refused: {failures[0]}")
    return time.monotonic() - started


def size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) if path.exists() else 0


def get_timed(url: str, path: str) -> tuple[float, int]:
    """GET PATH: milliseconds and bytes of the answer."""
    target = urlparse(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
    started = time.monotonic()
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
    return round((time.monotonic() - started) * 1000, 1), len(body)


def restart(binary: str, data: Path, log: Path, how: str) -> tuple[subprocess.Popen, str, dict]:
    """Starts the server again on DATA and measures the start."""
    process, url, seconds = start(binary, data, log)
    time.sleep(1)  # let start-up's last allocations settle before reading RSS
    snapshots = sorted((data / "snapshots").glob("snapshot-*.json")) if (data / "snapshots").exists() else []
    result = {
        "restart": how,
        "start_s": round(seconds, 3),
        **memory(process.pid),
        "snapshot_bytes": snapshots[-1].stat().st_size if snapshots else 0,
        "stream_index_bytes": size(data / "streams"),
        "log_bytes": size(data / "log"),
    }
    return process, url, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=str(REPO / "target" / "release" / "swarmlog"))
    parser.add_argument("--events", type=int, default=MILLION)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--dir", help="where to put the data directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    binary = str(Path(args.bin).resolve())
    work = Path(tempfile.mkdtemp(prefix="stream-memory-", dir=args.dir))
    data = work / "data"
    data.mkdir()
    log = work / "serve.log"
    try:
        process, url, _ = start(binary, data, log)
        samples: list = []
        seconds = load(url, args.events, args.connections, process.pid, samples)
        end = {"events": args.events, "ingest_s": round(seconds, 1),
               "events_per_s": round(args.events / seconds), **memory(process.pid)}
        print(json.dumps(end), flush=True)

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=600)
        process, url, after_term = restart(binary, data, log, "after SIGTERM")
        pages = [get_timed(url, f"/v1/streams/ingest%2F{n}?limit=100&from={args.events * n // 10}")[0]
                 for n in range(1, 10)]
        wholes = [get_timed(url, f"/v1/streams/ingest%2F{n}") for n in range(1, 4)]
        after_term.update({"page_of_100_ms_median": statistics.median(pages),
                           "whole_stream_ms_median": statistics.median(ms for ms, _ in wholes),
                           "whole_stream_bytes": wholes[0][1],
                           **{f"after_reads_{name}": mib for name, mib in memory(process.pid).items()}})
        print(json.dumps(after_term), flush=True)

        process.kill()
        process.wait()
        process, url, after_kill = restart(binary, data, log, "after SIGKILL")
        print(json.dumps(after_kill), flush=True)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=600)
        print(json.dumps({"summary": {"samples": samples, "end": end, "restarts": [after_term, after_kill]}}))
    finally:
        if 'process' in locals() and process.poll() is None:
            process.kill()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
