"""`wait_events` long poll, woken by a commit from another process."""

from __future__ import annotations

import asyncio
import json
import time

from swarmlog_mcp import cli, head, ok, refused, stdio_session


def append(data_dir, type_, stream, data) -> int:
    """Appends a custom event through the CLI (another process); returns its seq."""
    out = cli(data_dir, "--json", "events", "append", type_, stream, json.dumps(data)).stdout
    return int(json.loads(out)["seq"])


def outcome(task: asyncio.Task):
    return task.exception() or task.result()


def test_wait_events_woken_by_another_process(data_dir, errlog):
    async def main():
        async with stdio_session(data_dir, "waiter", errlog=errlog) as s:
            await ok(s, "join", {"type": "watcher"})
            start_head = head(data_dir)

            started = time.monotonic()
            waiting = asyncio.create_task(ok(s, "wait_events", {
                "after": start_head, "types": ["demo.*"], "timeout_ms": 20000}))
            await asyncio.sleep(0.5)
            assert not waiting.done(), f"wait_events returned at once: {outcome(waiting)}"
            # A commit that does not match must not end the wait.
            await asyncio.to_thread(append, data_dir, "other.noise", "noise/1", {"n": 0})
            await asyncio.sleep(0.5)
            assert not waiting.done(), f"wait_events returned on a non-matching event: {outcome(waiting)}"
            seq = await asyncio.to_thread(append, data_dir, "demo.ping", "demo/1", {"n": 1})
            answer = await asyncio.wait_for(waiting, timeout=15)
            elapsed = time.monotonic() - started
            print(f"wait_events woke after {elapsed:.2f} s (ping at ~1.0 s)")
            assert elapsed < 10, f"wait_events took {elapsed:.1f} s"
            types = [e["type"] for e in answer["events"]]
            assert types == ["demo.ping"], answer
            assert answer["events"][0]["seq"] == seq
            assert answer["events"][0]["data"] == {"n": 1}
            assert answer["next"] == seq, answer

            # Nothing new after `next`: empty at the timeout.
            t0 = time.monotonic()
            empty = await ok(s, "wait_events", {
                "after": answer["next"], "types": ["demo.*"], "timeout_ms": 500})
            waited = time.monotonic() - t0
            assert empty["events"] == [], empty
            assert waited >= 0.4, f"an empty wait returned after {waited:.2f} s"
            assert waited < 5, f"an empty 500 ms wait took {waited:.2f} s"
            assert empty["next"] >= answer["next"], empty

            # An event already after `after` answers at once.
            t0 = time.monotonic()
            again = await ok(s, "wait_events", {
                "after": start_head, "types": ["demo.*"], "timeout_ms": 20000})
            assert time.monotonic() - t0 < 3, "wait_events did not answer at once"
            assert [e["seq"] for e in again["events"]] == [seq], again

            # `stream` filters too.
            t0 = time.monotonic()
            other = await ok(s, "wait_events", {
                "after": start_head, "stream": "noise/", "timeout_ms": 20000})
            assert time.monotonic() - t0 < 3
            assert [e["type"] for e in other["events"]] == ["other.noise"], other

    asyncio.run(main())


def test_wait_events_refuses_bad_arguments(data_dir, errlog):
    """SPEC §7 caps timeout_ms at 60000: more is refused, not silently shortened; a
    missing `after` or an unknown field is refused with the HTTP codes."""

    async def main():
        async with stdio_session(data_dir, "waiter", errlog=errlog) as s:
            await refused(s, "wait_events", {"after": 0, "timeout_ms": 60001}, "invalid_value")
            await refused(s, "wait_events", {"timeout_ms": 10}, "missing_field")
            await refused(s, "wait_events", {"after": 0, "bogus": 1}, "unknown_field")

    asyncio.run(asyncio.wait_for(main(), 60))
