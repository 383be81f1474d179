"""Draws docs/board.png, the README's picture of the board: a populated swarm in a real
headless Chromium, the same way the tests open it. Run it after changing the page:

    target/ui-venv/bin/python tests/ui/screenshot.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from conftest import CHROMEDRIVER, CHROMIUM, populate  # noqa: E402
from swarmlog_server import REPO, Server  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402


def main() -> None:
    work = Path(tempfile.mkdtemp())
    (work / "data").mkdir()
    server = Server(work / "data", [], work / "serve.log")
    try:
        swarm = populate(server)
        server.call("POST", "/v1/tasks/collect-logs/complete", {"agent": "worker-2", "result": {"files": 12}})
        server.call("POST", "/v1/tasks/claim", {"agent": "worker-1"})
        server.call("POST", "/v1/proposals/add-index/votes", {"agent": "worker-1", "vote": "yes"})
        # A waiter in the lock's queue: an acquire that waits while the board is drawn.
        def wait_for_the_lock() -> None:
            try:
                server.call("POST", "/v1/locks/db-primary/acquire",
                            {"owner": "worker-2", "ttl_ms": 60_000, "wait_ms": 20_000})
            except Exception:  # noqa: BLE001  (refused or cut off when the server stops)
                pass

        waiter = threading.Thread(target=wait_for_the_lock, daemon=True)
        waiter.start()
        options = Options()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--window-size=1400,1500", f"--user-data-dir={work / 'chromium'}"):
            options.add_argument(argument)
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            driver.get(f"{server.url}/?session={swarm.session}")
            deadline = time.monotonic() + 20
            while "waiting" not in driver.execute_script("return document.querySelector('#locks').innerText"):
                if time.monotonic() > deadline:
                    raise SystemExit("the board did not show the lock waiter")
                time.sleep(0.1)
            target = REPO / "docs" / "board.png"
            driver.save_screenshot(str(target))
            print(f"wrote {target}")
        finally:
            driver.quit()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
