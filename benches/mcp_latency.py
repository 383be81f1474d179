"""Latency of one MCP tool call through the official Python SDK, over stdio
(`swarmlog mcp --db DIR`, no server) and over Streamable HTTP (`/mcp` on `swarmlog serve`),
plus the size of `tools/list`.

    target/mcp-venv/bin/python benches/mcp_latency.py [SWARMLOG_BINARY] [CALLS]

`bash tests/run-all.sh` creates target/mcp-venv. Prints the median and p90 of CALLS calls of
`kv_put` and `kv_get` per transport, in milliseconds, after 5 warm-up calls.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/swarmlog"
CALLS = int(sys.argv[2]) if len(sys.argv) > 2 else 50
WARMUP = 5


async def measure(session: ClientSession, label: str) -> None:
    for name, arguments in [("kv_put", {"key": "k", "value": 1}), ("kv_get", {"key": "k"})]:
        for _ in range(WARMUP):
            await session.call_tool(name, arguments)
        times = []
        for _ in range(CALLS):
            began = time.perf_counter()
            result = await session.call_tool(name, arguments)
            times.append((time.perf_counter() - began) * 1000)
            assert not result.isError, result
        times.sort()
        p90 = times[int(len(times) * 0.9) - 1]
        print(f"{label:12} {name:7} median {statistics.median(times):7.2f} ms   p90 {p90:7.2f} ms")


async def over_stdio(data: Path) -> None:
    params = StdioServerParameters(command=BINARY, args=["--db", str(data), "mcp", "--agent", "bench"])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            size = len(json.dumps(tools.model_dump(mode="json", exclude_none=True), separators=(",", ":")))
            print(f"tools/list   {len(tools.tools)} tools, {size} bytes of JSON")
            await measure(session, "stdio --db")


async def over_http(data: Path) -> None:
    server = subprocess.Popen(
        [BINARY, "--db", str(data), "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = server.stdout.readline()
        url = line.split("listening on ")[1].split()[0]
        async with streamablehttp_client(url + "/mcp") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await measure(session, "HTTP /mcp")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    with tempfile.TemporaryDirectory() as stdio_dir, tempfile.TemporaryDirectory() as http_dir:
        asyncio.run(over_stdio(Path(stdio_dir)))
        asyncio.run(over_http(Path(http_dir)))


if __name__ == "__main__":
    main()
