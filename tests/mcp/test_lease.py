"""The MCP connection keeps the caller's lease alive while open; a clean close deregisters
it (locks released, claims back to pending); a crash lets the lease run out."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from swarmlog_mcp import (
    agent_status, child_pids_with, claimed_task, cli_json, ok, replay, stdio_session,
)

# How long the SDK waits for a stdio server to exit on its own after stdin closes,
# before it terminates it (mcp.client.stdio.PROCESS_TERMINATION_TIMEOUT).
SDK_GRACE_S = 2.0


def hold_work(s, agent):
    """Claims a task and takes a lock as AGENT; returns the lock token."""
    async def run():
        await ok(s, "task_create", {"type": "job", "id": f"{agent}-task"})
        task = claimed_task(await ok(s, "task_claim", {}))
        assert task and task["id"] == f"{agent}-task", task
        lock = await ok(s, "lock_acquire", {"resource": f"{agent}-res", "ttl_ms": 60000})
        return lock["token"]
    return run()


def lock_holders(data_dir, resource):
    locks = cli_json(data_dir, "lock", "list")["locks"]
    return [h["owner"] for l in locks if l["resource"] == resource for h in l["holders"]]


def task_status(data_dir, task):
    return cli_json(data_dir, "task", "show", task)["status"]


def test_open_connection_keeps_lease_and_clean_close_deregisters(data_dir, errlog):
    agent = "lease-1"

    async def main():
        async with stdio_session(data_dir, agent, errlog=errlog) as s:
            await ok(s, "join", {"type": "worker", "ttl_ms": 1000})
            await hold_work(s, agent)
            await asyncio.sleep(3)
            # The CLI evaluates timers: a lease not kept alive would expire here.
            status = await asyncio.to_thread(agent_status, data_dir, agent)
            assert status == "active", f"after 3 s with a 1 s lease the agent is {status}"
            closing = time.monotonic()
        return time.monotonic() - closing

    close_s = asyncio.run(main())
    print(f"clean close took {close_s:.2f} s")
    assert not [e for e in replay(data_dir) if e["type"] == "agent.expired"]
    assert agent_status(data_dir, agent) == "deregistered"
    assert lock_holders(data_dir, f"{agent}-res") == [], "the lock outlived the close"
    assert task_status(data_dir, f"{agent}-task") == "pending", "the claim outlived the close"
    assert close_s < SDK_GRACE_S, (
        f"swarmlog mcp did not exit within {SDK_GRACE_S} s of stdin closing "
        "(the SDK had to terminate it)")


def test_crash_lets_the_lease_run_out(data_dir, errlog):
    agent = "crash-1"

    async def main():
        async with stdio_session(data_dir, agent, errlog=errlog) as s:
            await ok(s, "join", {"type": "worker", "ttl_ms": 1000})
            await hold_work(s, agent)
            pids = child_pids_with(str(data_dir))
            assert len(pids) == 1, f"expected one swarmlog mcp child, found {pids}"
            os.kill(pids[0], signal.SIGKILL)
            await asyncio.sleep(0.2)

    asyncio.run(main())
    deadline = time.monotonic() + 10
    while (status := agent_status(data_dir, agent)) == "active" and time.monotonic() < deadline:
        time.sleep(0.25)
    assert status == "expired", f"a crashed MCP client's agent is {status}"
    types = [e["type"] for e in replay(data_dir)]
    assert "agent.expired" in types and "agent.deregistered" not in types, types
    assert lock_holders(data_dir, f"{agent}-res") == []
    assert task_status(data_dir, f"{agent}-task") == "pending"
