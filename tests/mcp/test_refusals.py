"""Refusals are tool errors `code: ...` and write nothing."""

from __future__ import annotations

import asyncio

from swarmlog_mcp import head, ok, refused, replay, stdio_session

# A lease long enough that keeping it alive writes nothing during the test (with
# `--db`, a keep-alive may be a logged re-registration), so the head moves only
# when a tool writes.
LONG_LEASE_MS = 600_000


def test_state_cas_version_conflict_writes_nothing(data_dir, errlog):
    async def main():
        async with stdio_session(data_dir, "cas-1", errlog=errlog) as s:
            await ok(s, "join", {"type": "tester", "ttl_ms": LONG_LEASE_MS})
            await ok(s, "state_cas", {"key": "leader", "expected_version": 0, "value": "cas-1"})
            cell = await ok(s, "state_get", {"key": "leader"})
            assert (cell["value"], cell["version"]) == ("cas-1", 1), cell

            # The head, seen from another process while the MCP server stays open.
            before = head(data_dir)
            r = await refused(
                s, "state_cas", {"key": "leader", "expected_version": 7, "value": "other"},
                "version_conflict",
            )
            print("refusal:", r.text, r.data)
            await refused(
                s, "state_cas", {"key": "leader", "expected_version": 0, "value": "other"},
                "version_conflict",
            )
            assert head(data_dir) == before, "a refused CAS wrote an event"
            cell = await ok(s, "state_get", {"key": "leader"})
            assert (cell["value"], cell["version"]) == ("cas-1", 1), cell

            # read_events agrees with the CLI on the head.
            seen = (await ok(s, "read_events", {}))["events"]
            assert seen and seen[-1]["seq"] == before

            # The right version succeeds and moves the head by one event.
            await ok(s, "state_cas", {"key": "leader", "expected_version": 1, "value": "next"})
            assert head(data_dir) == before + 1
            cell = await ok(s, "state_get", {"key": "leader"})
            assert (cell["value"], cell["version"]) == ("next", 2), cell

    asyncio.run(main())
    assert not [e for e in replay(data_dir) if e.get("data", {}).get("value") == "other"]


def test_lock_held_across_processes_and_fencing(data_dir, errlog):
    async def main():
        async with stdio_session(data_dir, "locker-a", errlog=errlog) as a, \
                stdio_session(data_dir, "locker-b", errlog=errlog) as b:
            await ok(a, "join", {"type": "worker", "ttl_ms": LONG_LEASE_MS})
            await ok(b, "join", {"type": "worker", "ttl_ms": LONG_LEASE_MS})
            first = await ok(a, "lock_acquire", {"resource": "db", "ttl_ms": 30000})
            assert isinstance(first["token"], int), first
            assert first.get("owner", "locker-a") == "locker-a", first

            before = head(data_dir)
            await refused(b, "lock_acquire", {"resource": "db", "ttl_ms": 30000, "wait_ms": 0},
                          "lock_held")
            assert head(data_dir) == before, "a refused lock_acquire wrote an event"
            # Only the holder may release.
            r = await refused(b, "lock_release", {"resource": "db", "token": first["token"]},
                              "not_owner")
            assert r.is_error

            await ok(a, "lock_release", {"resource": "db", "token": first["token"]})
            second = await ok(b, "lock_acquire", {"resource": "db", "ttl_ms": 30000})
            assert second["token"] > first["token"], "fencing tokens increase"

    asyncio.run(main())
    acquired = [e for e in replay(data_dir) if e["type"] == "lock.acquired"]
    assert [e["actor"] for e in acquired] == ["locker-a", "locker-b"]
