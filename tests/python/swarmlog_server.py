"""What every Python end-to-end suite (tests/mcp, tests/ui) needs from swarmlog itself, with
no dependency beyond the standard library: the binary under test, a clean environment for
its children, a `swarmlog serve` child process, and plain JSON calls to its HTTP API."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SWARMLOG_BIN") or str(REPO / "target" / "debug" / "swarmlog")


def child_env() -> dict[str, str]:
    """The environment for swarmlog child processes: no inherited server/db/token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLOG_")}
    env["SWARMLOG_LOG"] = "warn"
    return env


class Server:
    """`swarmlog serve --db DIR --listen LISTEN [extra]` (LISTEN: any free port by default);
    the address it chose is read from DIR/server.addr (as tests/it/support.rs does)."""

    def __init__(self, data_dir: Path, extra: list[str], log_path: Path, listen: str = "127.0.0.1:0"):
        self.data_dir = data_dir
        self.log_path = log_path
        addr_file = data_dir / "server.addr"
        if addr_file.exists():
            addr_file.unlink()
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--db", str(data_dir), "--listen", listen, *extra],
            stdout=subprocess.DEVNULL, stderr=self._log, env=child_env(),
        )
        self.url = ""
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"swarmlog serve exited early with {self.proc.returncode}: {self.log()}"
                )
            try:
                first = addr_file.read_text().splitlines()[0].strip()
            except (OSError, IndexError):
                first = ""
            if first.startswith("http://"):
                try:
                    with urllib.request.urlopen(first + "/healthz", timeout=2) as resp:
                        if resp.status == 200:
                            self.url = first
                            return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"swarmlog serve did not come up within 30 s: {self.log()}")
            time.sleep(0.02)

    @property
    def mcp_url(self) -> str:
        return self.url + "/mcp"

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-4000:]
        except OSError:
            return ""

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """One HTTP API call; the decoded JSON answer (None for an empty one). A refusal
        raises `ApiError` with the status and the error object."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, error.read().decode()) from None
        return json.loads(text) if text.strip() else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Servers:
    """The servers one test starts, each with its stderr in LOGS/serve-N.log; `stop_all`
    stops them and prints what each wrote, so a failing test shows it."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[Server] = []

    def start(self, data_dir: Path, extra: list[str], listen: str = "127.0.0.1:0") -> Server:
        log = self.logs / f"serve-{len(self.started)}.log"
        server = Server(data_dir, extra, log, listen)
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()
            log = server.log()
            if log.strip():
                print(f"--- stderr of swarmlog serve ---\n{log}")


class ApiError(Exception):
    """A refused HTTP API call."""

    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body
