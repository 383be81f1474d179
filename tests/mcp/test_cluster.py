"""MCP on a cluster (several `swarmlog serve` on one JetStream stream): an agent connected
to a follower's /mcp writes through it (the follower forwards each write to the writer),
reads its own writes there, is woken by writes made through another node, and goes on
working when the writer is killed, without retrying a tool call itself.

The NATS cluster is three real nats-server processes on loopback with
`sync_interval: always`, from $SWARMLOG_NATS_SERVER or target/nats-venv (which
tests/run-all.sh installs for the Rust cluster suite)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from swarmlog_mcp import BIN, child_env, http_session, ok

ROOT = Path(__file__).resolve().parents[2]
LEASE_MS = "1000"


def nats_server_binary() -> str:
    path = os.environ.get("SWARMLOG_NATS_SERVER") or str(ROOT / "target/nats-venv/bin/nats-server")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no nats-server at {path}: run tests/run-all.sh (it installs one into "
            "target/nats-venv) or set SWARMLOG_NATS_SERVER",
            pytrace=False,
        )
    return path


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class NatsCluster:
    """Three nats-server processes forming one JetStream cluster, configured as the README
    says; each with its own config, store and log under `directory`."""

    def __init__(self, directory: Path, size: int = 3):
        binary = nats_server_binary()
        ports = free_ports(2 * size)
        self.client_ports, route_ports = ports[:size], ports[size:]
        routes = "\n".join(f"    nats-route://127.0.0.1:{port}" for port in route_ports)
        self.logs: list[Path] = []
        self.processes: list[subprocess.Popen] = []
        for i in range(size):
            name = f"n{i + 1}"
            config = directory / f"{name}.conf"
            config.write_text(
                f"server_name: {name}\nlisten: 127.0.0.1:{self.client_ports[i]}\n"
                f"cluster {{\n  name: swarmlog-mcp-test\n  listen: 127.0.0.1:{route_ports[i]}\n"
                f"  routes: [\n{routes}\n  ]\n}}\n"
                f"jetstream {{\n  store_dir: \"{directory / name}\"\n  sync_interval: always\n}}\n"
                "max_payload: 8MB\n"
            )
            log = directory / f"{name}.log"
            self.logs.append(log)
            with open(log, "w") as out:
                self.processes.append(
                    subprocess.Popen([binary, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
                )
        deadline = time.monotonic() + 30
        for port in self.client_ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"nats-server on {port} did not listen: {self.tail()}"
                    time.sleep(0.05)

    @property
    def urls(self) -> str:
        return ",".join(f"nats://127.0.0.1:{port}" for port in self.client_ports)

    def tail(self) -> str:
        return "\n".join(log.read_text()[-2000:] for log in self.logs if log.exists())

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


@pytest.fixture
def nats(tmp_path):
    directory = tmp_path / "nats"
    directory.mkdir()
    cluster = NatsCluster(directory)
    yield cluster
    cluster.stop()


def metric(server, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in the metrics of {server.url}")


def wait_until_writer(server) -> None:
    """Until `server` sees itself as the cluster's writer."""
    me = server.url.removeprefix("http://")
    deadline = time.monotonic() + 20
    while metric(server, f'swarmlog_cluster_writer{{node="{me}"}}') != 1.0:
        assert time.monotonic() < deadline, f"{server.url} never became the writer"
        time.sleep(0.05)


def test_an_agent_on_a_follower_writes_reads_waits_and_outlives_the_writer(
    tmp_path, nats, start_server
):
    dirs = [tmp_path / name for name in ("a", "b")]
    for d in dirs:
        d.mkdir()
    flags = ["--store", nats.urls, "--nats-stream", "mcp", "--lease-ms", LEASE_MS]
    a = start_server(dirs[0], *flags)
    wait_until_writer(a)
    b = start_server(dirs[1], *flags)

    async def scenario():
        async with http_session(b.mcp_url, None) as s:
            await ok(s, "join", {"id": "agent-on-b", "type": "worker", "ttl_ms": 600000})
            await ok(s, "state_cas", {"key": "counter", "expected_version": None, "value": 1})
            # Read-your-writes on the node written through; the writer has it too.
            cell = await ok(s, "state_get", {"key": "counter"})
            assert (cell["value"], cell["version"]) == (1, 1), cell
            on_a = httpx.get(a.url + "/v1/state/counter", timeout=10).json()
            assert (on_a["value"], on_a["version"]) == (1, 1), on_a

            # A write made through the writer wakes a wait on the follower.
            after = httpx.get(b.url + "/healthz", timeout=10).json()["head"]

            async def write_through_a():
                await asyncio.sleep(0.5)
                r = await asyncio.to_thread(
                    httpx.post, a.url + "/v1/events",
                    json={"type": "demo.ping", "stream": "demo/1"}, timeout=10,
                )
                assert r.status_code == 201, r.text

            waited, _ = await asyncio.gather(
                ok(s, "wait_events", {"after": after, "types": ["demo.*"], "timeout_ms": 20000}),
                write_through_a(),
            )
            assert [e["type"] for e in waited["events"]] == ["demo.ping"], waited

            # The writer dies holding its lease; the next tool call is neither refused nor
            # retried by the agent: the follower takes over and answers it.
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait()
            await ok(s, "state_cas", {"key": "counter", "expected_version": 1, "value": 2})
            cell = await ok(s, "state_get", {"key": "counter"})
            assert (cell["value"], cell["version"]) == (2, 2), cell
            me = await ok(s, "whoami", {})
            assert me["agent"] == "agent-on-b", me

    asyncio.run(asyncio.wait_for(scenario(), timeout=90))
    assert metric(b, "swarmlog_cluster_failovers_total") == 1.0
    # The session's clean close deregistered its agent, through the new writer.
    deadline = time.monotonic() + 10
    while (status := httpx.get(b.url + "/v1/agents/agent-on-b", timeout=10).json()["status"]) == "active":
        assert time.monotonic() < deadline, "the closed session's agent stayed active"
        time.sleep(0.1)
    assert status == "deregistered", status
    # One history: the stream holds every event the node serves, and both writes once.
    proc = subprocess.run(
        [BIN, "--json", "verify", "--store", nats.urls, "--nats-stream", "mcp"],
        capture_output=True, text=True, timeout=60, env=child_env(),
    )
    assert proc.returncode == 0, proc.stderr
    lines = httpx.get(b.url + "/v1/events?from=1", timeout=10).text.splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    assert json.loads(proc.stdout)["records"] == len(events), (proc.stdout, len(events))
    assert [e["data"]["value"] for e in events if e["type"] == "state.set"] == [1, 2]
