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
import signal
import subprocess
import time

import httpx

from swarmlog_mcp import BIN, child_env, http_session, ok
from nats_cluster import cluster_flags, metric, nats, wait_until_writer  # noqa: F401 (nats: a fixture)


def test_an_agent_on_a_follower_writes_reads_waits_and_outlives_the_writer(
    tmp_path, nats, start_server
):
    dirs = [tmp_path / name for name in ("a", "b")]
    for d in dirs:
        d.mkdir()
    flags = cluster_flags(nats, "mcp")
    a = start_server(dirs[0], *flags)
    wait_until_writer(a.url)
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
    assert metric(b.url, "swarmlog_cluster_failovers_total") == 1.0
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
