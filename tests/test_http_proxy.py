"""`mcp-defense http` and `mcp-defense sse` end to end: the `mcp` SDK's own servers upstream
(real processes over HTTP), its own clients in front, the proxy as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.support.http_proxy import proxy, rss_hwm_kib, upstream

JEWEL = "~/.ssh/id_ed25519"
ERAS = ["legacy", "2026-07-28"]

pytestmark = pytest.mark.timeout(90)


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def _denied(c: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(MCPError) as exc:
        await c.call_tool(tool, args)
    data = exc.value.error.data
    assert isinstance(data, dict), exc.value
    return data


@pytest.mark.parametrize("era", ERAS)
def test_streamable_http_both_eras(tmp_path: Path, era: str) -> None:
    rec = tmp_path / "rec.jsonl"
    logs: list[str] = []

    async def on_log(params: Any) -> None:
        logs.append(str(params.data))

    with (
        upstream("streamable-http") as up,
        proxy("http", up.url, "--archetype", "filesystem", "--record", str(rec)) as px,
    ):

        async def run() -> None:
            async with Client(px.url, mode=era, logging_callback=on_log, log_level="info") as c:
                assert c.protocol_version == ("2025-11-25" if era == "legacy" else era)
                names = {t.name for t in (await c.list_tools()).tools}
                assert {"read_file", "write_file", "notify"} <= names
                r = await c.call_tool("read_file", {"path": "README.md"})
                assert r.content[0].text == "contents of README.md"  # type: ignore[union-attr]
                data = await _denied(c, "read_file", {"path": JEWEL})
                assert data["decision"] == "deny" and data["rule"]
                r = await c.call_tool("notify", {"message": "hello"})
                assert r.content[0].text == "notified hello"  # type: ignore[union-attr]

        anyio.run(run)
    assert any("note: hello" in m for m in logs)  # a server notification passed through
    evs = events(rec)
    starts = [e for e in evs if e["type"] == "session_start"]
    assert starts and starts[0]["transport"] == "http" and starts[0]["upstream"] == up.url
    calls = [e for e in evs if e["type"] == "tool_call"]
    decided = {(e["tool"], e["decision"]) for e in calls}
    assert ("read_file", "deny") in decided and ("read_file", "allow") in decided
    # Every forwarded call has its outcome recorded.
    results = {e["correlation_id"] for e in evs if e["type"] == "tool_result"}
    assert all(e["correlation_id"] in results for e in calls if e["decision"] == "allow")


def test_handshake_session_end_and_delete(tmp_path: Path) -> None:
    """DELETE ends the upstream session; a request in a session the upstream forgot is the
    upstream's 404, passed on."""
    with upstream("streamable-http") as up, proxy("http", up.url, "-a", "filesystem") as px:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        h = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        with httpx2.Client(timeout=20) as http:
            r = http.post(px.url, json=init, headers=h)
            assert r.status_code == 200, r.text
            sid = r.headers["mcp-session-id"]
            h2 = {**h, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
            r = http.post(
                px.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h2
            )
            assert r.status_code == 202
            # A denied call in this session, answered as JSON because the client accepts it.
            call = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "read_file", "arguments": {"path": JEWEL}},
            }
            r = http.post(px.url, json=call, headers=h2)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/json")
            assert r.json()["error"]["data"]["decision"] == "deny"
            # Only SSE accepted: the refusal comes as one SSE event.
            r = http.post(px.url, json=call, headers={**h2, "accept": "text/event-stream"})
            assert r.headers["content-type"].startswith("text/event-stream")
            assert '"decision":"deny"' in r.text.replace(" ", "")
            r = http.delete(px.url, headers=h2)
            assert r.status_code in (200, 204)
            call["params"] = {"name": "read_file", "arguments": {"path": "README.md"}}
            r = http.post(px.url, json=call, headers=h2)
            assert r.status_code == 404


def test_two_concurrent_clients_slow_call_blocks_no_one() -> None:
    with upstream("streamable-http") as up, proxy("http", up.url, "-a", "filesystem") as px:
        order: list[str] = []

        async def slow() -> None:
            async with Client(px.url, mode="legacy") as c:
                await c.call_tool("slow", {"seconds": 3})
                order.append("slow")

        async def fast() -> None:
            async with Client(px.url, mode="2026-07-28") as c:
                await anyio.sleep(0.5)
                for _ in range(5):
                    r = await c.call_tool("read_file", {"path": "a.txt"})
                    assert r.content[0].text == "contents of a.txt"  # type: ignore[union-attr]
                order.append("fast")

        async def both() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                tg.start_soon(fast)

        anyio.run(both)
        assert order == ["fast", "slow"]


def test_origin_host_and_token_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token-of-the-proxy\n")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    h = {"accept": "application/json, text/event-stream"}
    with (
        upstream("streamable-http") as up,
        proxy("http", up.url, "-a", "filesystem", "--token-file", str(token)) as px,
    ):
        with httpx2.Client(timeout=20) as http:
            r = http.post(px.url, json=body, headers={**h, "origin": "http://evil.example"})
            assert r.status_code == 403 and "Origin" in r.json()["error"]
            r = http.post(
                px.url.replace("127.0.0.1", "localhost"),
                json=body,
                headers={**h, "host": "attacker.example:80"},
            )
            assert r.status_code == 421
            r = http.post(px.url, json=body, headers=h)
            assert r.status_code == 401 and "missing" in r.json()["error"]
            r = http.post(px.url, json=body, headers={**h, "x-mcp-defense-token": "nope"})
            assert r.status_code == 401 and "wrong" in r.json()["error"]

        async def with_token() -> None:
            headers = {"X-MCP-Defense-Token": "s3cret-token-of-the-proxy"}
            async with httpx2.AsyncClient(headers=headers, timeout=20) as hc:
                async with Client(streamable_http_client(px.url, http_client=hc)) as c:
                    assert (await c.list_tools()).tools

        anyio.run(with_token)


NO_RESPONSE_RULES = str(Path(__file__).parent / "data" / "no_response_rules.mcpd")


@pytest.mark.parametrize("flags", [(), ("--json",)], ids=["sse-body", "json-body"])
@pytest.mark.parametrize("policy", ["stream", "builtin"])
def test_16_mib_result_streams_through(flags: tuple[str, ...], policy: str) -> None:
    """Without response rules a large result streams (memory stays flat); with the built-in
    pack's it is held whole (up to --max-message-bytes) so that secrets can be redacted."""
    extra = ["-p", NO_RESPONSE_RULES] if policy == "stream" else []
    with (
        upstream("streamable-http", *flags) as up,
        proxy("http", up.url, "-a", "filesystem", *extra) as px,
    ):
        before = rss_hwm_kib(px.proc.pid)

        async def run() -> int:
            async with httpx2.AsyncClient(timeout=60) as hc:
                transport = streamable_http_client(px.url, http_client=hc, max_sse_event_size=None)
                async with Client(transport, mode="legacy") as c:
                    r = await c.call_tool("big", {"mib": 16})
                    return len(r.content[0].text)  # type: ignore[union-attr]

        assert anyio.run(run) == 16 << 20
        grown = rss_hwm_kib(px.proc.pid) - before
        print(f"proxy peak RSS grew {grown / 1024:.1f} MiB for a 16 MiB result ({policy}, {flags})")
        if policy == "stream":  # streamed, not held: less than the result held once more
            assert grown < 16 * 1024


def test_oauth_401_and_discovery_pass_through(tmp_path: Path) -> None:
    """An upstream that wants OAuth: the 401, its WWW-Authenticate and the discovery
    documents reach the client untouched; the client's Authorization reaches the upstream."""
    app = tmp_path / "oauth_upstream.py"
    app.write_text(_OAUTH_UPSTREAM)
    import socket
    import subprocess
    import sys

    from tests.support.http_proxy import free_port, stop, wait_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(app), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_port(port, proc)
        url = f"http://127.0.0.1:{port}/mcp"
        with proxy("http", url, "-a", "generic") as px, httpx2.Client(timeout=20) as http:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            r = http.post(px.url, json=body, headers={"accept": "application/json"})
            assert r.status_code == 401
            assert r.headers["www-authenticate"].startswith("Bearer resource_metadata=")
            base = px.url.rsplit("/mcp", 1)[0]
            r = http.get(base + "/.well-known/oauth-protected-resource/mcp")
            assert r.status_code == 200 and r.json()["authorization_servers"]
            r = http.get(base + "/.well-known/oauth-authorization-server")
            assert r.status_code == 200 and "token_endpoint" in r.json()
            r = http.post(
                px.url,
                json=body,
                headers={"accept": "application/json", "authorization": "Bearer user-token"},
            )
            assert r.status_code == 200 and r.json()["result"]["auth"] == "Bearer user-token"
    finally:
        stop(proc)
    _ = socket


_OAUTH_UPSTREAM = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def mcp(request):
    auth = request.headers.get("authorization")
    if not auth:
        return JSONResponse({"error": "unauthorized"}, 401, headers={
            "WWW-Authenticate": 'Bearer resource_metadata="http://x/.well-known/oauth-protected-resource/mcp"'})
    body = await request.json()
    return JSONResponse({"jsonrpc": "2.0", "id": body["id"], "result": {"auth": auth}})

async def prm(request):
    return JSONResponse({"resource": "http://x/mcp", "authorization_servers": ["http://x"]})

async def asm(request):
    return JSONResponse({"issuer": "http://x", "token_endpoint": "http://x/token"})

app = Starlette(routes=[Route("/mcp", mcp, methods=["POST"]),
    Route("/.well-known/oauth-protected-resource/mcp", prm),
    Route("/.well-known/oauth-authorization-server", asm)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def test_approval_page_answers_a_held_call(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    ws = tmp_path / "w"
    ws.mkdir()
    with (
        upstream("streamable-http") as up,
        proxy(
            "http",
            up.url,
            "-a",
            "filesystem",
            "--approval",
            "--set",
            f"workspace={ws}",
            "--record",
            str(rec),
        ) as px,
    ):
        base = px.url.rsplit("/mcp", 1)[0]
        results: list[str] = []

        async def call() -> None:
            async with Client(px.url, mode="legacy") as c:
                r = await c.call_tool("write_file", {"path": str(ws / "CLAUDE.md"), "content": "x"})
                results.append(r.content[0].text)  # type: ignore[union-attr]
                data = await _denied(
                    c, "write_file", {"path": str(ws / "AGENTS.md"), "content": "y"}
                )
                results.append(data["approval"])

        async def approve() -> None:
            token = await _page_token(px)
            async with httpx2.AsyncClient(timeout=20) as http:
                for decision in ("approve", "reject"):
                    pending: list[Any] = []
                    while not pending:
                        await anyio.sleep(0.1)
                        r = await http.get(
                            f"{base}/_mcp-defense/approvals.json", params={"token": token}
                        )
                        pending = r.json()
                    page = await http.get(f"{base}/_mcp-defense/approvals", params={"token": token})
                    assert pending[0]["tool"] in page.text and "Approve" in page.text
                    r = await http.post(
                        f"{base}/_mcp-defense/approvals/{pending[0]['id']}",
                        data={"token": token, "decision": decision},
                        headers={"accept": "application/json"},
                    )
                    assert r.status_code == 200

        async def both() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                tg.start_soon(approve)

        anyio.run(both)
        assert results[0].startswith("wrote 1 bytes") and results[1] == "rejected"
        with httpx2.Client(timeout=10) as http:
            r = http.get(f"{base}/_mcp-defense/approvals.json", params={"token": "wrong"})
            assert r.status_code == 401
    approvals = [e["approval"] for e in events(rec) if e["type"] == "tool_call"]
    assert approvals == ["approved", "rejected"]


async def _page_token(px: Any) -> str:
    """The approval page's URL is printed on stderr when the first call waits."""
    line = b""
    while b"?token=" not in line:
        line = await anyio.to_thread.run_sync(px.proc.stderr.readline)
        assert line, "the proxy did not print the approval page"
    return line.decode().rsplit("?token=", 1)[1].strip()


def test_legacy_sse_transport(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    with (
        upstream("sse") as up,
        proxy("sse", up.url, "-a", "filesystem", "--record", str(rec)) as px,
    ):
        assert px.url.endswith("/sse")

        async def run() -> None:
            async with Client(sse_client(px.url)) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                assert "read_file" in names
                r = await c.call_tool("read_file", {"path": "notes.txt"})
                assert r.content[0].text == "contents of notes.txt"  # type: ignore[union-attr]
                # The refusal arrives on the client's stream, where an SDK client reads.
                data = await _denied(c, "read_file", {"path": JEWEL})
                assert data["decision"] == "deny"
                r = await c.call_tool("read_file", {"path": "after.txt"})
                assert r.content[0].text == "contents of after.txt"  # type: ignore[union-attr]

        anyio.run(run)
    evs = events(rec)
    assert any(e["type"] == "session_start" and e["transport"] == "sse" for e in evs)
    assert [e["decision"] for e in evs if e["type"] == "tool_call"] == ["allow", "deny", "allow"]


def test_unknown_archetype_and_non_loopback_bind_are_usage_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    base = [sys.executable, "-m", "mcp_defense", "http", "--upstream", "http://127.0.0.1:1/mcp"]
    r = subprocess.run([*base, "-a", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown archetype" in r.stderr
    r = subprocess.run(
        [*base, "-a", "generic", "--bind", "0.0.0.0:1"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "--token-file" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "mcp_defense", "http", "-a", "generic", "--upstream", "ftp://x"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "http:// or https://" in r.stderr


def test_kill_rule_ends_the_session_and_is_recorded(tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    policy = Path(__file__).parent / "data" / "stdio_test.mcpd"
    with (
        upstream("streamable-http") as up,
        proxy("http", up.url, "-a", "filesystem", "-p", str(policy), "--record", str(rec)) as px,
    ):

        async def run() -> None:
            async with Client(px.url, mode="legacy") as c:
                data = await _denied(c, "self_destruct", {})
                assert data["decision"] == "kill"
                with pytest.raises(MCPError, match="session ended by policy"):
                    await c.call_tool("read_file", {"path": "a.txt"})

        anyio.run(run)
    kills = [e for e in events(rec) if e["type"] == "kill"]
    assert len(kills) == 1 and kills[0]["rule"] == "self_destruct"


def test_routing_headers_must_match_the_decided_body() -> None:
    """2026-07-28: a server may route on Mcp-Method/Mcp-Name; they must say what was decided."""
    with upstream("streamable-http") as up, proxy("http", up.url, "-a", "filesystem") as px:
        call = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "read_file", "arguments": {"path": "a.txt"}},
        }
        h = {
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/call",
            "mcp-name": "write_file",
        }
        with httpx2.Client(timeout=20) as http:
            r = http.post(px.url, json=call, headers=h)
            assert r.status_code == 400 and "Mcp-Name" in r.json()["error"]["message"]
            r = http.post(px.url, json=call, headers={**h, "mcp-method": "tools/list"})
            assert r.status_code == 400 and "Mcp-Method" in r.json()["error"]["message"]


def test_approval_through_elicitation_in_the_client(tmp_path: Path) -> None:
    """A client that declared elicitation is asked through its own UI (the person answers,
    not the model); the answer decides the held call and is recorded."""
    from mcp_types import ElicitResult

    rec = tmp_path / "rec.jsonl"
    ws = tmp_path / "w"
    ws.mkdir()
    asked: list[str] = []

    async def elicit(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        approve = "CLAUDE.md" in params.message
        return ElicitResult(action="accept", content={"approve": approve})

    with (
        upstream("streamable-http") as up,
        proxy(
            "http",
            up.url,
            "-a",
            "filesystem",
            "--approval",
            "--set",
            f"workspace={ws}",
            "--record",
            str(rec),
        ) as px,
    ):

        async def run() -> None:
            async with Client(px.url, mode="legacy", elicitation_callback=elicit) as c:
                r = await c.call_tool("write_file", {"path": str(ws / "CLAUDE.md"), "content": "x"})
                assert r.content[0].text.startswith("wrote 1 bytes")  # type: ignore[union-attr]
                data = await _denied(
                    c, "write_file", {"path": str(ws / "AGENTS.md"), "content": "y"}
                )
                assert data["approval"] == "rejected"
                r = await c.call_tool("read_file", {"path": "after.txt"})
                assert r.content[0].text == "contents of after.txt"  # type: ignore[union-attr]

        anyio.run(run)
    assert len(asked) == 2 and "instruction_file_write" in asked[0]
    calls = [e for e in events(rec) if e["type"] == "tool_call"]
    assert [e["approval"] for e in calls[:2]] == ["approved", "rejected"]
    assert "elicitation" in calls[0]["reason"]


def test_size_limit_upstream_down_and_hot_reload(tmp_path: Path) -> None:
    """An over-size message is refused unread; an unreachable upstream is an error that says
    so; a saved policy decides the next call (hot reload, as on stdio)."""
    pol = tmp_path / "p.mcpd"
    pol.write_text('import "builtin:"\n')
    with (
        upstream("streamable-http") as up,
        proxy(
            "http", up.url, "-a", "filesystem", "-p", str(pol), "--max-message-bytes", "4096"
        ) as px,
    ):
        h = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}
        call = {
            "jsonrpc": "2.0",
            "id": 9,
            "method": "tools/call",
            "params": {"name": "read_file", "arguments": {"path": "x" * 8000}},
        }
        with httpx2.Client(timeout=20) as http:
            r = http.post(px.url, json=call, headers=h)
            assert r.json()["error"]["code"] == -32011 and r.json()["id"] == 9

        async def read(path: str) -> str:
            async with Client(px.url, mode="2026-07-28") as c:
                r = await c.call_tool("read_file", {"path": path})
                return r.content[0].text  # type: ignore[union-attr,no-any-return]

        assert anyio.run(read, "notes.txt") == "contents of notes.txt"
        pol.write_text(
            'import "builtin:"\nrule no_notes priority 300 {\n'
            '  when call.tool == "read_file" && call.args.path.endsWith("notes.txt")\n'
            '  deny "no notes today"\n}\n'
        )

        async def until_denied() -> dict[str, Any]:
            for _ in range(100):
                async with Client(px.url, mode="2026-07-28") as c:
                    try:
                        await c.call_tool("read_file", {"path": "notes.txt"})
                    except MCPError as e:
                        return e.error.data  # type: ignore[return-value]
                await anyio.sleep(0.1)
            raise AssertionError("the saved policy never took effect")

        assert anyio.run(until_denied)["rule"] == "no_notes"
    with proxy("http", up.url, "-a", "filesystem") as px2, httpx2.Client(timeout=20) as http:
        r = http.post(
            px2.url,
            json=call | {"params": {"name": "read_file", "arguments": {"path": "a"}}},
            headers=h,
        )
        err = r.json()["error"]
        assert err["code"] == -32000 and "upstream failed" in err["message"]


_ABSOLUTE_ENDPOINT_UPSTREAM = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
import asyncio

PORT = int(sys.argv[1])
posted = asyncio.Queue()

async def sse(request):
    async def gen():
        yield f"event: endpoint\\ndata: http://127.0.0.1:{PORT}/rpc?session_id=abc\\n\\n".encode()
        while True:
            body = await posted.get()
            yield b"event: message\\ndata: " + body + b"\\n\\n"
    return StreamingResponse(gen(), media_type="text/event-stream")

async def rpc(request):
    body = await request.body()
    import json
    msg = json.loads(body)
    await posted.put(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {"echo": msg["method"]}}).encode())
    return Response("Accepted", 202)

app = Starlette(routes=[Route("/sse", sse), Route("/rpc", rpc, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
"""


def test_legacy_absolute_endpoint_is_rewritten_to_the_proxy(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support.http_proxy import free_port, stop, wait_port

    app = tmp_path / "abs_upstream.py"
    app.write_text(_ABSOLUTE_ENDPOINT_UPSTREAM)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(app), str(port)], stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        with proxy("sse", f"http://127.0.0.1:{port}", "-a", "generic") as px:
            assert px.url.endswith(f"{px.port}/")

            async def run() -> tuple[str, str, str]:
                base = f"http://127.0.0.1:{px.port}"
                async with httpx2.AsyncClient(timeout=20) as http:
                    async with http.stream("GET", base + "/sse") as stream:
                        lines = stream.aiter_lines()
                        endpoint = ""
                        async for line in lines:
                            if line.startswith("data: "):
                                endpoint = line[6:]
                                break
                        post = await http.post(
                            endpoint, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
                        )
                        async for line in lines:
                            if line.startswith("data: "):
                                return endpoint, str(post.status_code), line[6:]
                return "", "", ""

            endpoint, status, message = anyio.run(run)
            assert endpoint == f"http://127.0.0.1:{px.port}/rpc?session_id=abc"
            assert status == "202" and json.loads(message)["result"]["echo"] == "tools/list"
    finally:
        stop(proc)


def test_secrets_redacted_over_http(tmp_path: Path) -> None:
    with upstream("streamable-http") as up, proxy("http", up.url, "-a", "generic") as px:

        async def run() -> str:
            async with Client(px.url, mode="legacy") as c:
                r = await c.call_tool("read_file", {"path": "ghp_" + "a1B2c3D4" * 5})
                return r.content[0].text  # type: ignore[union-attr,no-any-return]

        out = anyio.run(run)
        assert out == "contents of [REDACTED:github_token]"


def test_approval_page_in_a_real_browser(tmp_path: Path) -> None:
    """The approval page as a person uses it: headless Chromium opens the printed URL, sees
    the held call, clicks Approve; the call goes through."""
    from tests.support.browser import browser

    ws = tmp_path / "w"
    ws.mkdir()
    with (
        upstream("streamable-http") as up,
        proxy("http", up.url, "-a", "filesystem", "--approval", "--set", f"workspace={ws}") as px,
        browser(tmp_path) as page,
    ):
        if page is None:
            pytest.skip("Chromium is not installed")
        out: list[str] = []

        async def call() -> None:
            async with Client(px.url, mode="legacy") as c:
                r = await c.call_tool("write_file", {"path": str(ws / "CLAUDE.md"), "content": "x"})
                out.append(r.content[0].text)  # type: ignore[union-attr]

        async def person() -> None:
            token = await _page_token(px)
            url = f"{px.url.rsplit('/mcp', 1)[0]}/_mcp-defense/approvals?token={token}"

            def click() -> None:
                page.goto(url)
                page.wait_for("document.querySelector('button[value=approve]') !== null")
                assert "write_file" in page.eval("document.body.innerText")
                assert "instruction_file_write" in page.eval("document.body.innerText")
                page.eval("document.querySelector('button[value=approve]').click()")
                page.wait_for("document.getElementById('none') !== null")

            await anyio.to_thread.run_sync(click)

        async def both() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                tg.start_soon(person)

        anyio.run(both)
        assert out and out[0].startswith("wrote 1 bytes")
