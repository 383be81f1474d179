"""Many `swarmlog mcp --db DIR` processes side by side on one directory, no server."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from swarmlog_mcp import claimed_task, cli, cli_json, ok, replay, stdio_session

WORKERS = 8
TASKS = 40


def test_eight_stdio_workers_claim_each_task_once(data_dir, errlog):
    ids = [f"job-{n:02}" for n in range(TASKS)]
    batch = [{"type": "crunch", "id": i, "capabilities": ["crunch"]} for i in ids]
    # One task nobody can do: it must stay pending.
    batch.append({"type": "render", "id": "needs-gpu", "capabilities": ["gpu"]})
    cli(data_dir, "task", "create", "--batch", json.dumps(batch))

    async def worker(n: int) -> list[str]:
        agent = f"w{n}"
        done = []
        async with stdio_session(data_dir, agent, errlog=errlog) as s:
            await ok(s, "join", {"type": "worker", "capabilities": ["crunch"]})
            while True:
                task = claimed_task(await ok(s, "task_claim", {"wait_ms": 100}))
                if task is None:
                    break
                assert task["status"] == "claimed", task
                assert task["id"] != "needs-gpu", f"{agent} claimed a task it cannot do"
                await ok(s, "task_complete", {"task": task["id"], "result": {"by": agent}})
                done.append(task["id"])
        return done

    async def main():
        return await asyncio.gather(*(worker(n) for n in range(WORKERS)))

    per_worker = asyncio.run(main())
    print("tasks per worker:", [len(d) for d in per_worker])
    all_done = [t for d in per_worker for t in d]
    assert sorted(all_done) == ids, "every task completed by exactly one worker"

    events = replay(data_dir)
    claimed = [e for e in events if e["type"] == "task.claimed"]
    completed = [e for e in events if e["type"] == "task.completed"]
    claimed_ids = Counter(e["stream"] for e in claimed)
    twice = {s: n for s, n in claimed_ids.items() if n > 1}
    assert not twice, f"claimed more than once: {twice}"
    assert len(claimed) == TASKS, f"{len(claimed)} task.claimed events"
    assert set(claimed_ids) == {f"task/{i}" for i in ids}
    assert len(completed) == TASKS, f"{len(completed)} task.completed events"
    assert {e["stream"] for e in completed} == {f"task/{i}" for i in ids}

    workers = {f"w{n}" for n in range(WORKERS)}
    claimant = {e["stream"]: e["actor"] for e in claimed}
    for e in completed:
        assert e["actor"] in workers, e
        assert e["actor"] == claimant[e["stream"]], f"completed by a non-claimant: {e}"

    tasks = cli_json(data_dir, "task", "list")["tasks"]
    status = {t["id"]: t["status"] for t in tasks}
    assert all(status[i] == "completed" for i in ids), status
    assert status["needs-gpu"] == "pending"
    # The seqs are gap-free across the concurrent writers.
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
