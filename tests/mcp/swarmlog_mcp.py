"""Helpers for the MCP end-to-end tests: the binary, the CLI, MCP sessions over stdio and
Streamable HTTP (official Python SDK), a `swarmlog serve` child process, tool calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator, TextIO

import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from swarmlog_server import BIN, Servers, child_env  # noqa: E402, F401  (shared with tests/ui)

# Longest a single MCP request may take before the SDK gives up (wait_events may take
# up to 60 s by contract; the tests never ask for more than 20 s).
READ_TIMEOUT = timedelta(seconds=90)

# Every tool SPEC §7 names.
SPEC_TOOLS = [
    "join", "whoami", "append_events", "read_events", "wait_events",
    "state_get", "state_cas", "kv_get", "kv_put", "lock_acquire", "lock_release",
    "task_create", "task_claim", "task_progress", "task_complete", "task_fail", "task_list",
    "finding_post", "hypothesis_propose", "hypothesis_evidence", "blackboard",
    "proposal_open", "vote", "proposal_get", "message_send", "inbox", "message_ack",
    "session_report",
]


# --- the CLI -------------------------------------------------------------------------


def cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs `swarmlog --db DATA_DIR ARGS...` (in-process on the directory)."""
    proc = subprocess.run(
        [BIN, "--db", str(data_dir), *args],
        capture_output=True, text=True, env=child_env(), timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"swarmlog {' '.join(args)} exited {proc.returncode}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def cli_json(data_dir: Path, *args: str) -> Any:
    """Runs the CLI with `--json` and parses its answer."""
    return json.loads(cli(data_dir, "--json", *args).stdout)


def replay(data_dir: Path, *args: str) -> list[dict]:
    """All committed events (NDJSON audit replay through the CLI)."""
    out = cli(data_dir, "--json", "events", "replay", *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def head(data_dir: Path) -> int:
    """The committed head seq (0 for an empty log)."""
    return int(cli_json(data_dir, "stats")["head"])


def agent_status(data_dir: Path, agent: str) -> str:
    return cli_json(data_dir, "agent", "show", agent)["status"]


# --- tool calls ----------------------------------------------------------------------


@dataclass
class ToolResult:
    name: str
    is_error: bool
    text: str
    data: Any  # structuredContent

    def __str__(self) -> str:
        return f"{self.name}: isError={self.is_error} text={self.text!r}"


async def call(session: ClientSession, name: str, args: dict | None = None) -> ToolResult:
    """Calls a tool; returns its outcome (a refusal is a result, not an exception)."""
    result = await session.call_tool(name, args or {})
    texts = [c.text for c in result.content if isinstance(c, TextContent)]
    return ToolResult(
        name=name,
        is_error=bool(result.isError),
        text=texts[0] if texts else "",
        data=result.structuredContent,
    )


async def ok(session: ClientSession, name: str, args: dict | None = None) -> Any:
    """Calls a tool that must succeed; checks the result contract (structuredContent is
    the JSON answer and the first text content holds the same JSON); returns the JSON."""
    r = await call(session, name, args)
    assert not r.is_error, f"tool {name}({json.dumps(args)}) was refused: {r.text}"
    assert r.data is not None, f"tool {name} answered no structuredContent (text: {r.text!r})"
    try:
        as_text = json.loads(r.text)
    except ValueError:
        raise AssertionError(f"tool {name}: first text content is not JSON: {r.text!r}")
    assert as_text == r.data, f"tool {name}: text {r.text!r} differs from structuredContent {r.data!r}"
    return r.data


async def refused(session: ClientSession, name: str, args: dict | None, code: str) -> ToolResult:
    """Calls a tool that must be refused with error `code` (text `code: ...`)."""
    r = await call(session, name, args)
    assert r.is_error, f"tool {name}({json.dumps(args)}) should be refused with {code}, got {r.text}"
    assert r.text.startswith(code + ":"), f"tool {name}: expected '{code}: ...', got {r.text!r}"
    return r


def claimed_task(answer: dict) -> dict | None:
    """The task a `task_claim` answer holds, or None when there was nothing to claim
    (`{"task": null}`). Tolerates the task being wrapped as `{"task": {...}}`."""
    if "task" in answer and (answer["task"] is None or isinstance(answer["task"], dict)):
        return answer["task"]
    return answer


# --- sessions ------------------------------------------------------------------------


def stdio_params(data_dir: Path, agent: str | None = None, *extra: str) -> StdioServerParameters:
    args = ["mcp", "--db", str(data_dir)]
    if agent is not None:
        args += ["--agent", agent]
    return StdioServerParameters(command=BIN, args=[*args, *extra], env={"SWARMLOG_LOG": "warn"})


@asynccontextmanager
async def stdio_session(
    data_dir: Path, agent: str | None = None, *extra: str, errlog: TextIO | None = None
) -> AsyncIterator[ClientSession]:
    """`swarmlog mcp --db DATA_DIR [--agent AGENT]` on stdio, initialized. Leaving the
    block closes its stdin (a clean close); the SDK kills it if it does not exit."""
    params = stdio_params(data_dir, agent, *extra)
    async with stdio_client(params, errlog=errlog or sys.stderr) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=READ_TIMEOUT) as session:
            await session.initialize()
            yield session


@asynccontextmanager
async def stdio_url_session(
    url: str, token: str | None, *extra: str, errlog: TextIO | None = None
) -> AsyncIterator[ClientSession]:
    """`swarmlog mcp --url URL [--token SECRET]` on stdio (a server behind it), initialized."""
    args = ["mcp", "--url", url] + (["--token", token] if token else []) + list(extra)
    params = StdioServerParameters(command=BIN, args=args, env={"SWARMLOG_LOG": "warn"})
    async with stdio_client(params, errlog=errlog or sys.stderr) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=READ_TIMEOUT) as session:
            await session.initialize()
            yield session


@asynccontextmanager
async def http_session(mcp_url: str, token: str | None) -> AsyncIterator[ClientSession]:
    """An initialized Streamable HTTP session on `mcp_url` with a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(
        headers=headers, timeout=httpx.Timeout(30, read=300), follow_redirects=True
    ) as client:
        async with streamable_http_client(mcp_url, http_client=client) as (read, write, _):
            async with ClientSession(read, write, read_timeout_seconds=READ_TIMEOUT) as session:
                await session.initialize()
                yield session


def http_statuses(exc: BaseException) -> list[int]:
    """HTTP status codes of every httpx.HTTPStatusError inside `exc` (exception groups,
    causes and contexts included)."""
    found: list[int] = []
    seen: set[int] = set()

    def walk(e: BaseException | None) -> None:
        if e is None or id(e) in seen:
            return
        seen.add(id(e))
        if isinstance(e, httpx.HTTPStatusError):
            found.append(e.response.status_code)
        for sub in getattr(e, "exceptions", ()) or ():
            walk(sub)
        walk(e.__cause__)
        walk(e.__context__)

    walk(exc)
    return found


# --- a server child process ----------------------------------------------------------


def child_pids_with(marker: str) -> list[int]:
    """Pids of this process's direct children whose command line contains `marker`."""
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and marker in cmdline:
            pids.append(int(entry))
    return pids
