"""`swarmlog mcp` on stdio: the tool list, the guide resource, joining."""

from __future__ import annotations

import asyncio
import json
import subprocess

from pydantic import AnyUrl

from swarmlog_mcp import (
    BIN, SPEC_TOOLS, child_env, claimed_task, cli, ok, refused, stdio_session,
)

TOOLS_LIST_LIMIT = 24 * 1024

# Tools whose HTTP body names the caller (owner / agent / from): over MCP that argument
# is implicit and must not appear in the input schema.
CALLER_IMPLICIT = [
    "lock_acquire", "lock_release", "task_claim", "task_progress", "task_complete",
    "task_fail", "finding_post", "vote", "message_send", "message_ack",
]


def test_tools_are_listed_with_input_schemas(data_dir, errlog):
    async def main():
        async with stdio_session(data_dir, errlog=errlog) as s:
            tools = []
            cursor = None
            while True:
                page = await s.list_tools(cursor=cursor) if cursor else await s.list_tools()
                tools += page.tools
                cursor = page.nextCursor
                if not cursor:
                    return tools

    tools = asyncio.run(main())
    by_name = {t.name: t for t in tools}
    assert len(by_name) == len(tools), "tool names are unique"
    missing = [name for name in SPEC_TOOLS if name not in by_name]
    assert not missing, f"tools missing from tools/list: {missing}"

    problems = []
    for tool in tools:
        schema = tool.inputSchema
        if not isinstance(schema, dict) or schema.get("type") != "object":
            problems.append(f"{tool.name}: inputSchema is not an object schema: {schema!r}")
            continue
        combinators = [k for k in ("anyOf", "oneOf", "allOf") if k in schema]
        if combinators:
            # LLM tool-calling APIs take a plain object schema at the top level (e.g. the
            # Anthropic API rejects top-level anyOf/oneOf/allOf in input_schema).
            problems.append(f"{tool.name}: top-level {combinators} in inputSchema")
        if not (tool.description or "").strip():
            problems.append(f"{tool.name}: no description")
        props = schema.get("properties") or {}
        if "owner" in props:
            problems.append(f"{tool.name}: schema has the caller field 'owner'")
        if "from" in props and not is_a_seq(props["from"]):
            # `from` as a seq cursor (read_events, inbox) is fine; as an agent it is not.
            problems.append(f"{tool.name}: schema has the caller field 'from'")
        if tool.name in CALLER_IMPLICIT and "agent" in props:
            problems.append(f"{tool.name}: schema has the caller field 'agent'")
        if "owner" in json.dumps(schema.get("required", [])):
            problems.append(f"{tool.name}: 'owner' is required")
    assert not problems, "\n".join(problems)

    # Field names the interface fixes.
    def props(name):
        return set(by_name[name].inputSchema.get("properties", {}))

    assert {"key", "expected_version", "value"} <= props("state_cas")
    assert {"resource", "ttl_ms"} <= props("lock_acquire")
    assert {"resource", "token"} <= props("lock_release")
    assert {"task", "result"} <= props("task_complete")
    assert {"after", "types", "timeout_ms"} <= props("wait_events")
    assert {"events"} <= props("append_events")

    size = len(json.dumps(
        {"tools": [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools]},
        separators=(",", ":"), ensure_ascii=False,
    ).encode())
    print(f"tools/list: {len(tools)} tools, {size} bytes of JSON (SDK view)")
    assert size <= TOOLS_LIST_LIMIT, f"tools/list is {size} bytes, over {TOOLS_LIST_LIMIT}"


def is_a_seq(p: dict) -> bool:
    """Whether a property schema is an integer (a seq cursor), not an agent id."""
    types = p.get("type")
    types = types if isinstance(types, list) else [types]
    return "integer" in types or "number" in types or any(
        "integer" in json.dumps(alt) for alt in p.get("anyOf", []) + p.get("oneOf", [])
    )


def test_tools_list_wire_size(data_dir):
    """The exact bytes of the tools/list response on the wire (stdio, one JSON line)."""
    proc = subprocess.Popen(
        [BIN, "mcp", "--db", str(data_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=child_env(),
    )
    try:
        def send(msg):
            proc.stdin.write((json.dumps(msg) + "\n").encode())
            proc.stdin.flush()

        def answer(id_):
            while True:
                line = proc.stdout.readline()
                assert line, "swarmlog mcp closed stdout"
                msg = json.loads(line)
                if msg.get("id") == id_:
                    return line, msg

        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "size-probe", "version": "0"}}})
        answer(1)
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        total, cursor, n = 0, None, 2
        while True:
            send({"jsonrpc": "2.0", "id": n, "method": "tools/list",
                  "params": {"cursor": cursor} if cursor else {}})
            line, msg = answer(n)
            assert "result" in msg, f"tools/list failed: {msg}"
            total += len(line.rstrip(b"\n"))
            cursor = msg["result"].get("nextCursor")
            n += 1
            if not cursor:
                break
        print(f"tools/list response on the wire: {total} bytes")
        assert total <= TOOLS_LIST_LIMIT, f"tools/list is {total} bytes, over {TOOLS_LIST_LIMIT}"
    finally:
        proc.kill()
        proc.wait()


def test_guide_resource(data_dir, errlog):
    async def main():
        async with stdio_session(data_dir, errlog=errlog) as s:
            listed = await s.list_resources()
            read = await s.read_resource(AnyUrl("swarmlog://guide"))
            return listed, read

    listed, read = asyncio.run(main())
    uris = [str(r.uri) for r in listed.resources]
    assert "swarmlog://guide" in uris, f"resources/list: {uris}"
    listed_guide = next(r for r in listed.resources if str(r.uri) == "swarmlog://guide")
    assert read.contents, "the guide has content"
    text = read.contents[0].text
    print(f"guide: {len(text)} chars, mimeType {read.contents[0].mimeType}")
    # The guide is Markdown, and says so in the listing and in the content read.
    assert listed_guide.mimeType == "text/markdown", listed_guide
    assert read.contents[0].mimeType == "text/markdown", (
        f"swarmlog://guide is read as {read.contents[0].mimeType}, listed as text/markdown")
    for word in ("wait_events", "join", "task_claim", "version_conflict"):
        assert word in text, f"the guide does not mention {word}"

    # `swarmlog guide` prints the same Markdown (SPEC §7).
    printed = cli(data_dir, "guide").stdout
    assert printed.strip() == text.strip(), "`swarmlog guide` differs from swarmlog://guide"


def test_join_before_agent_tools(data_dir, errlog):
    """Without --agent, a tool that needs the caller is refused with `not_joined`
    (telling to call join); after `join` with an id, whoami names it and the tool works."""
    async def main():
        async with stdio_session(data_dir, errlog=errlog) as s:
            who = await ok(s, "whoami")
            assert who.get("agent") is None, f"whoami before join: {who}"
            r = await refused(s, "task_claim", {}, "not_joined")
            assert "join" in r.text[len("not_joined:"):], f"the refusal should say to call join: {r.text}"
            await ok(s, "join", {"type": "worker", "id": "solo-1", "capabilities": ["x"]})
            who = await ok(s, "whoami")
            assert who.get("agent") == "solo-1", f"whoami after join: {who}"
            assert claimed_task(await ok(s, "task_claim", {})) is None
            # kv_get of an absent key is a refusal with the HTTP code.
            await refused(s, "kv_get", {"key": "absent"}, "not_found")

    asyncio.run(main())
    events = [json.loads(l) for l in cli(data_dir, "--json", "events", "replay").stdout.splitlines()]
    registered = {e["stream"] for e in events if e["type"] == "agent.registered"}
    assert registered == {"agent/solo-1"}, registered
    assert events[-1]["type"] == "agent.deregistered", "a clean close deregisters"
