"""MCP over Streamable HTTP at /mcp on `swarmlog serve --tokens`: the token's agent is the
caller; roles and missing tokens are enforced."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from swarmlog_mcp import (
    call, claimed_task, http_session, http_statuses, ok, refused, stdio_url_session,
)

TOKENS = """
[[token]]
secret = "agent-1-secret-0123456789"
agent = "agent-1"
role = "agent"

[[token]]
secret = "agent-2-secret-0123456789"
agent = "agent-2"
role = "agent"

[[token]]
secret = "reader-secret-0123456789"
agent = "reader-1"
role = "reader"

[[token]]
secret = "admin-secret-0123456789"
agent = "admin-1"
role = "admin"
"""

ADMIN = {"Authorization": "Bearer admin-secret-0123456789"}


@pytest.fixture
def server(tmp_path, data_dir, start_server):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS)
    return start_server(data_dir, "--tokens", str(tokens))


def events(server) -> list[dict]:
    r = httpx.get(server.url + "/v1/events", headers=ADMIN, timeout=30)
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def get(server, path) -> httpx.Response:
    return httpx.get(server.url + path, headers=ADMIN, timeout=30)


async def bounded(coro, seconds=60):
    return await asyncio.wait_for(coro, timeout=seconds)


def test_agent_token_is_the_caller(server):
    async def main():
        async with http_session(server.mcp_url, "agent-1-secret-0123456789") as s:
            await ok(s, "join", {"type": "worker", "capabilities": ["x"]})
            who = await ok(s, "whoami")
            assert who.get("agent") == "agent-1", who
            await ok(s, "kv_put", {"key": "http-k", "value": {"a": 1}})
            got = await ok(s, "kv_get", {"key": "http-k"})
            assert got["value"] == {"a": 1}, got
            await ok(s, "append_events", {"events": [
                {"type": "demo.http", "stream": "demo/http", "data": {"x": 1}}]})
            lock = await ok(s, "lock_acquire", {"resource": "http-res", "ttl_ms": 10000})
            await ok(s, "lock_release", {"resource": "http-res", "token": lock["token"]})
            await ok(s, "task_create", {"type": "job", "id": "H-1"})
            task = claimed_task(await ok(s, "task_claim", {}))
            assert task and task["id"] == "H-1" and task["status"] == "claimed", task
            await ok(s, "task_complete", {"task": "H-1", "result": "done"})
            listed = await ok(s, "task_list", {"status": "completed"})
            assert [t["id"] for t in listed["tasks"]] == ["H-1"], listed

            # The token's agent cannot act as another agent.
            before = get(server, "/v1/audit/head").json()["seq"]
            r = await call(s, "join", {"type": "worker", "id": "agent-2"})
            print("join as another agent:", r)
            assert r.is_error, f"join as agent-2 with agent-1's token was accepted: {r.text}"
            assert r.text.startswith("forbidden:"), r.text
            assert get(server, "/v1/audit/head").json()["seq"] == before, "the refusal wrote"

    asyncio.run(bounded(main()))
    evs = events(server)
    mine = [e for e in evs if e["type"] in (
        "agent.registered", "kv.put", "demo.http", "lock.acquired", "lock.released",
        "task.claimed", "task.completed")]
    assert {e["type"] for e in mine} == {
        "agent.registered", "kv.put", "demo.http", "lock.acquired", "lock.released",
        "task.claimed", "task.completed"}, [e["type"] for e in evs]
    wrong = [e for e in mine if e["actor"] != "agent-1"]
    assert not wrong, f"events not attributed to the token's agent: {wrong}"
    assert not [e for e in evs if e["stream"] == "agent/agent-2" or e.get("actor") == "agent-2"]
    assert get(server, "/v1/agents/agent-2").status_code == 404


def test_reader_token_cannot_write(server):
    outcome = {}

    async def main():
        try:
            async with http_session(server.mcp_url, "reader-secret-0123456789") as s:
                outcome["read"] = await call(s, "read_events", {"limit": 5})
                outcome["head"] = get(server, "/v1/audit/head").json()["seq"]
                outcome["write"] = await call(s, "kv_put", {"key": "reader-k", "value": 1})
                outcome["append"] = await call(s, "append_events", {"events": [
                    {"type": "demo.reader", "stream": "demo/reader"}]})
        except Exception as e:  # an HTTP-level refusal ends the session
            outcome["error"] = e

    asyncio.run(bounded(main()))
    if "error" in outcome and "write" not in outcome:
        statuses = http_statuses(outcome["error"])
        assert 403 in statuses, f"reader session failed without a 403: {outcome['error']!r}"
    else:
        assert "error" not in outcome, repr(outcome.get("error"))
        read = outcome["read"]
        assert not read.is_error, f"a reader may read: {read.text}"
        for key in ("write", "append"):
            r = outcome[key]
            print("reader", key, "->", r)
            assert r.is_error and r.text.startswith("forbidden"), f"reader {key}: {r}"
    assert get(server, "/v1/kv/reader-k").status_code == 404
    written = [e for e in events(server) if e["type"].startswith(("kv.", "demo."))
               or e.get("actor") == "reader-1"]
    assert not written, f"a reader's refused call wrote: {written}"


def test_no_token_is_refused(server):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "no-token", "version": "0"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    r = httpx.post(server.mcp_url, json=init, headers=accept, timeout=10)
    assert r.status_code == 401, (r.status_code, r.text)
    r = httpx.post(server.mcp_url, json=init, timeout=10,
                   headers={**accept, "Authorization": "Bearer not-a-token"})
    assert r.status_code == 401, (r.status_code, r.text)
    r = httpx.get(server.mcp_url, headers={"Accept": "text/event-stream"}, timeout=10)
    assert r.status_code == 401, (r.status_code, r.text)

    async def main():
        async with http_session(server.mcp_url, None) as s:
            await ok(s, "whoami")

    with pytest.raises(Exception) as info:
        asyncio.run(bounded(main(), 30))
    assert 401 in http_statuses(info.value), f"the SDK failed without a 401: {info.value!r}"
    assert events(server) == []


def test_stdio_mcp_through_a_server_with_a_token(server, errlog):
    """`swarmlog mcp --url URL --token SECRET`: the token names the agent (no --agent,
    no id in join), its writes are the token's agent's, and it cannot act as another."""
    async def main():
        async with stdio_url_session(server.url, "agent-2-secret-0123456789", errlog=errlog) as s:
            await ok(s, "join", {"type": "worker"})
            who = await ok(s, "whoami")
            assert who.get("agent") == "agent-2", who
            await ok(s, "kv_put", {"key": "url-k", "value": 2})
            await refused(s, "join", {"type": "worker", "id": "agent-1"}, "forbidden")

    asyncio.run(bounded(main()))
    evs = events(server)
    put = [e for e in evs if e["type"] == "kv.put"]
    assert [e["actor"] for e in put] == ["agent-2"], put
    assert [e["type"] for e in evs if e["stream"] == "agent/agent-2"][-1] == "agent.deregistered"
    assert not [e for e in evs if e["stream"] == "agent/agent-1"]


def test_wait_events_over_http_wakes_on_a_commit_made_through_the_api(server):
    """The long poll over /mcp: it returns as soon as another client commits a matching
    event, not at its timeout, and an empty wait lasts its timeout."""

    async def scenario():
        async with http_session(server.mcp_url, "agent-1-secret-0123456789") as session:
            start = (await ok(session, "read_events", {}))["events"]
            after = start[-1]["seq"] if start else 0

            async def commit_later():
                await asyncio.sleep(1.0)
                r = await asyncio.to_thread(
                    httpx.post,
                    server.url + "/v1/events",
                    headers=ADMIN,
                    json={"type": "demo.ping", "stream": "demo/1"},
                    timeout=30,
                )
                assert r.status_code == 201, r.text

            loop = asyncio.get_running_loop()
            began = loop.time()
            waited, _ = await asyncio.gather(
                ok(session, "wait_events", {"after": after, "types": ["demo.*"], "timeout_ms": 20000}),
                commit_later(),
            )
            elapsed = loop.time() - began
            assert [event["type"] for event in waited["events"]] == ["demo.ping"]
            assert waited["next"] == waited["events"][0]["seq"]
            assert elapsed < 10, f"woken after {elapsed:.1f}s, not at the commit"
            began = loop.time()
            empty = await ok(session, "wait_events", {"after": waited["next"], "timeout_ms": 500})
            assert empty["events"] == [] and empty["next"] == waited["next"]
            assert loop.time() - began >= 0.4

    asyncio.run(bounded(scenario()))


def test_closing_an_http_session_deregisters_its_agent(server):
    """A clean close of a /mcp session ends its lease at once, as over stdio: the agent
    is deregistered and its lock released."""

    async def scenario():
        async with http_session(server.mcp_url, "agent-2-secret-0123456789") as session:
            await ok(session, "join", {"type": "worker", "ttl_ms": 600000})
            await ok(session, "lock_acquire", {"resource": "held-by-2", "ttl_ms": 600000})
            assert get(server, "/v1/agents/agent-2").json()["status"] == "active"

    asyncio.run(bounded(scenario()))
    deadline = time.monotonic() + 10
    while get(server, "/v1/agents/agent-2").json()["status"] == "active" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert get(server, "/v1/agents/agent-2").json()["status"] == "deregistered"
    assert get(server, "/v1/locks/held-by-2").json()["holders"] == []
