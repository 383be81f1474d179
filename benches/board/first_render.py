"""What a page load of the board costs with a big swarm, measured in a real browser.

Populates a fresh `swarmlog serve` with AGENTS agents, TASKS tasks (three quarters of them
in chains of dependencies, 50 claimed), HISTORY custom events and 600 more, then opens the board RUNS
times in headless Chromium and reads, from the page's own Performance API:

- first_render_ms: navigation start to the board's first full render (the mark
  `swarmlog:first-render`, set once every panel is drawn);
- reads_ms: navigation start to the end of the last API read of that render;
- render_ms: the time the page's script took to draw every panel from those reads;
- the same for the time slider (`/?at=SEQ` near the head, another seq each run, so each
  rebuilds the state from the log).

Prints each run and the medians, as JSON on the last line. Run it with the UI suite's
venv and a release build (2 cores are noisy: compare medians, not single runs):

    cargo build --release
    target/ui-venv/bin/python benches/board/first_render.py --bin target/release/swarmlog
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "python"))
sys.path.insert(0, str(REPO / "tests" / "ui"))

import swarmlog_server  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

MEASURE = """
const mark = performance.getEntriesByName('swarmlog:first-render')[0];
const draw = performance.getEntriesByName('swarmlog:render-all')[0];
const reads = performance.getEntriesByType('resource').filter((entry) => entry.name.includes('/v1/'));
return mark && draw ? {first_render_ms: mark.startTime, render_ms: draw.duration,
               reads_ms: Math.max(...reads.filter((entry) => entry.startTime < mark.startTime).map((entry) => entry.responseEnd))}
            : null;
"""


def populate(server, agents: int, tasks: int, history: int) -> None:
    for n in range(agents):
        server.call("POST", "/v1/agents", {"id": f"agent-{n:03}", "type": "worker", "capabilities": ["x"],
                                           "ttl_ms": 3_600_000})
    batch = [{"id": f"task-{n:04}", "type": "work", "priority": 1 + n % 10, "session": f"s-{n % 5}",
              **({"depends_on": [f"task-{n - 1:04}"]} if n % 4 else {})} for n in range(tasks)]
    for start in range(0, tasks, 1000):
        server.call("POST", "/v1/tasks", {"tasks": batch[start:start + 1000]})
    for n in range(min(50, agents)):
        server.call("POST", "/v1/tasks/claim", {"agent": f"agent-{n:03}"})
    for start in range(0, history, 1000):
        events = [{"type": "load.history", "stream": f"history/{n % 100}"} for n in range(start, min(history, start + 1000))]
        server.call("POST", "/v1/events", {"events": events})
    server.call("POST", "/v1/events", {"events": [{"type": "load.tick", "stream": f"load/{n}"} for n in range(600)]})


def open_board(driver, url: str) -> dict:
    driver.get("about:blank")
    driver.get(url)
    deadline = time.monotonic() + 60
    while True:
        figures = driver.execute_script(MEASURE)
        if figures:
            return figures
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} never rendered")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=str(REPO / "target" / "release" / "swarmlog"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--history", type=int, default=0,
                        help="custom events appended before the last 600, so the slider rebuilds a longer log")
    args = parser.parse_args()
    swarmlog_server.BIN = str(Path(args.bin).resolve())

    work = Path(tempfile.mkdtemp(prefix="board-bench-"))
    (work / "data").mkdir()
    server = swarmlog_server.Server(work / "data", [], work / "serve.log")
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1400,1600", f"--user-data-dir={work / 'chromium'}"):
        options.add_argument(argument)
    driver = None
    try:
        print(f"populating: {args.agents} agents, {args.tasks} tasks", file=sys.stderr)
        populate(server, args.agents, args.tasks, args.history)
        head = server.call("GET", "/v1/audit/head")["seq"]
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        results = {}
        # Each slider run goes to another seq, so each rebuilds the past from the log (the
        # server keeps only the last state it rebuilt).
        pages = {"live": [f"{server.url}/"] * (args.runs + 1),
                 "slider": [f"{server.url}/?at={head - 1 - run}" for run in range(args.runs + 1)]}
        for name, urls in pages.items():
            open_board(driver, urls[0])  # warm-up: the browser's cache holds the page's files after this
            runs = [open_board(driver, url) for url in urls[1:]]
            for figures in runs:
                print(f"{name}: first render {figures['first_render_ms']:.0f} ms, reads done "
                      f"{figures['reads_ms']:.0f} ms, drawn in {figures['render_ms']:.0f} ms", file=sys.stderr)
            results[name] = {key: round(statistics.median(run[key] for run in runs))
                             for key in ("first_render_ms", "reads_ms", "render_ms")}
        print(json.dumps({"tasks": args.tasks, "agents": args.agents, "events": head, "runs": args.runs,
                          "median": results}))
    finally:
        if driver is not None:
            driver.quit()
        server.stop()


if __name__ == "__main__":
    main()
