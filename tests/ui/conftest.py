"""Fixtures of the user-interface suite: a `swarmlog serve` child on a fresh directory, and a
populated swarm (agents, dependent tasks, a held lock with a waiter, a finding, a
hypothesis, a proposal, a message) for the board and `swarmlog top` to show."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from swarmlog_server import BIN, Server, Servers  # noqa: E402

# Screenshots and page captures land here (CI keeps them as artifacts).
ARTIFACTS = Path(os.environ.get("SWARMLOG_UI_ARTIFACTS") or Path(BIN).parent.parent / "ui-artifacts")


@pytest.fixture(scope="session", autouse=True)
def swarmlog_binary() -> str:
    if not os.access(BIN, os.X_OK):
        pytest.fail(f"no swarmlog binary at {BIN} (build it, or set SWARMLOG_BIN)", pytrace=False)
    return BIN


@pytest.fixture
def start_server(tmp_path: Path):
    """Starts `swarmlog serve` on a fresh directory (or a given one); every server started
    is stopped at teardown and its stderr shown."""
    servers = Servers(tmp_path)

    def start(*extra: str, data_dir: Path | None = None, listen: str = "127.0.0.1:0") -> Server:
        if data_dir is None:
            data_dir = tmp_path / f"data-{len(servers.started)}"
            data_dir.mkdir()
        return servers.start(data_dir, list(extra), listen)

    yield start
    servers.stop_all()


@dataclass
class Swarm:
    """What `populate` wrote, for the assertions."""

    agents: list[str]
    tasks: list[str]
    lock: str
    lock_token: int
    finding: str
    hypothesis: str
    proposal: str
    message: str
    session: str


def populate(server: Server, token: str | None = None) -> Swarm:
    """A small swarm in session `inc-7`: three agents, a chain of dependent tasks (the first
    claimed), a lock held by one agent, a finding, a hypothesis with that finding as
    evidence, an open proposal with one vote of three, and a message."""
    call = lambda method, path, body=None: server.call(method, path, body, token)  # noqa: E731
    session = "inc-7"
    call("POST", "/v1/sessions", {"id": session, "operation": "triage the outage"})
    agents = ["planner-1", "worker-1", "worker-2"]
    for agent, caps in zip(agents, [["plan"], ["db", "logs"], ["logs"]]):
        call("POST", "/v1/agents", {"id": agent, "type": "llm", "capabilities": caps, "ttl_ms": 600_000})
    call("POST", "/v1/tasks", {"tasks": [
        {"id": "collect-logs", "type": "collect", "title": "Collect the logs", "priority": 8,
         "capabilities": ["logs"], "session": session},
        {"id": "find-cause", "type": "analyse", "title": "Find the root cause",
         "depends_on": ["collect-logs"], "session": session},
        {"id": "write-report", "type": "report", "title": "Write the report",
         "depends_on": ["find-cause"], "session": session},
    ]})
    call("POST", "/v1/tasks/claim", {"agent": "worker-2"})
    lock = call("POST", "/v1/locks/db-primary/acquire", {"owner": "worker-1", "ttl_ms": 600_000})
    call("POST", "/v1/findings", {"id": "slow-queries", "agent": "worker-1", "session": session,
                                  "category": "observation", "content": "p99 of orders queries is 4 s",
                                  "confidence": 0.8,
                                  "evidence": [{"source": "pg_stat_statements", "query": "top 10 by time"}]})
    call("POST", "/v1/hypotheses", {"id": "missing-index", "description": "an index on orders.customer is missing",
                                    "confidence": 0.5, "session": session})
    call("POST", "/v1/hypotheses/missing-index/evidence", {"finding": "slow-queries", "supports": True})
    call("POST", "/v1/proposals", {"id": "add-index", "action": "create index on orders(customer)",
                                   "quorum": "majority", "voters": agents, "deadline_ms": 600_000})
    call("POST", "/v1/proposals/add-index/votes", {"agent": "planner-1", "vote": "yes", "reason": "cheap to try"})
    sent = call("POST", "/v1/messages", {"from": "planner-1", "to": "worker-1", "type": "request",
                                         "payload": {"text": "check the replica too"}})
    return Swarm(agents=agents, tasks=["collect-logs", "find-cause", "write-report"],
                 lock="db-primary", lock_token=lock["token"], finding="slow-queries",
                 hypothesis="missing-index", proposal="add-index", message=sent["id"], session=session)


# ---- the browser ------------------------------------------------------------------------

CHROMIUM = os.environ.get("SWARMLOG_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SWARMLOG_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture
def browser(tmp_path: Path, request):
    """A fresh headless Chromium (its own profile) driven over WebDriver by chromedriver.
    Its network requests are recorded (the performance log). At teardown a screenshot of
    the page is saved under ARTIFACTS, named after the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: install Debian's chromium and chromium-driver "
                        "(.ci/run does)", pytrace=False)
    options = Options()
    options.binary_location = CHROMIUM
    # Headless, as root, and quiet: this machine has no network but loopback, so Chromium's
    # own background connections are switched off.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                     "--window-size=1400,1600", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / f"{request.node.name}.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        if errors:
            print("--- browser console errors ---", *errors, sep="\n")
    finally:
        driver.quit()
