"""Fixtures for the MCP end-to-end tests. Helpers live in swarmlog_mcp.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from swarmlog_mcp import BIN, Servers, child_env


@pytest.fixture(scope="session", autouse=True)
def swarmlog_binary() -> str:
    """The binary under test ($SWARMLOG_BIN, default target/debug/swarmlog) must exist
    and have the `mcp` subcommand."""
    if not os.access(BIN, os.X_OK):
        pytest.fail(f"no swarmlog binary at {BIN} (build it, or set SWARMLOG_BIN)", pytrace=False)
    proc = subprocess.run([BIN, "mcp", "--help"], capture_output=True, text=True, env=child_env())
    if proc.returncode != 0:
        pytest.fail(
            f"`{BIN} mcp --help` exited {proc.returncode}: {proc.stderr.strip()}", pytrace=False
        )
    return BIN


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh data directory."""
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def errlog(tmp_path: Path):
    """A file for the stderr of stdio MCP servers; shown when the test fails."""
    path = tmp_path / "mcp-stderr.log"
    f = open(path, "w")
    yield f
    f.close()
    text = path.read_text()
    if text.strip():
        print(f"--- stderr of the swarmlog mcp processes ---\n{text[-6000:]}")


@pytest.fixture
def start_server(tmp_path: Path):
    """Starts `swarmlog serve` on a directory; every server started is stopped at teardown."""
    servers = Servers(tmp_path)
    yield lambda data_dir, *extra: servers.start(data_dir, list(extra))
    servers.stop_all()
