"""Real MCP peers on both sides of the proxy: the Python SDK's stdio client in front, and
behind it the SDK server in examples/servers/ or the reference npm filesystem server."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from support.stdio_helpers import ROOT, SDK_SERVER, read_events
from support.stdio_proxy_mode import cli_cmd

from mcp_defense.protocol.jsonrpc import POLICY_DENIED


def params_for(argv: list[str]) -> StdioServerParameters:
    return StdioServerParameters(
        command=argv[0], args=argv[1:], env={"PYTHONPATH": str(ROOT)}, cwd=str(ROOT)
    )


def proxied(server: list[str], workspace: Path, *flags: str) -> StdioServerParameters:
    """`mcp-defense stdio` (built-in pack, workspace = the test's workspace) in front of `server`."""
    return params_for(cli_cmd(server, *flags, workspace=str(workspace)))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    ws.mkdir()
    (ws / "main.py").write_text("print('hello from the workspace')\n")
    return ws


def test_sdk_client_through_proxy_to_sdk_server(tmp_path, workspace):
    rec = tmp_path / "rec.jsonl"
    params = proxied([*SDK_SERVER, str(workspace)], workspace, "--record", str(rec))

    async def scenario() -> None:
        async with Client(params, mode="legacy") as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert {"read_file", "write_file", "big_result", "sha256"} <= set(tools)
            assert "exec_command" not in tools  # a filesystem server's command runner: hidden
            assert tools["read_file"].annotations.read_only_hint is True

            ok = await client.call_tool("read_file", {"path": str(workspace / "main.py")})
            assert ok.is_error is False and "hello from the workspace" in ok.content[0].text

            with pytest.raises(MCPError) as denied:
                await client.call_tool("read_file", {"path": "/home/alice/.aws/credentials"})
            err = denied.value.error
            assert err.code == POLICY_DENIED
            assert err.data["decision"] == "deny" and err.data["rule"] == "crown_jewel"
            assert err.data["correlation_id"].startswith("tc_")

            big = await client.call_tool("big_result", {"size": 16 << 20})
            assert big.is_error is False and len(big.content[0].text) == 16 << 20

            text = "0123456789abcdef" * (1 << 20)  # 16 MiB argument
            digest = await client.call_tool("sha256", {"text": text})
            assert digest.content[0].text == hashlib.sha256(text.encode()).hexdigest()

            again = await client.call_tool("read_file", {"path": str(workspace / "main.py")})
            assert again.is_error is False

    anyio.run(scenario)
    calls = [e for e in read_events(rec) if e["type"] == "tool_call"]
    assert [c["decision"] for c in calls] == ["allow", "deny", "allow", "allow", "allow"]
    results = {e["correlation_id"]: e for e in read_events(rec) if e["type"] == "tool_result"}
    assert calls[1]["correlation_id"] not in results  # the denied call never had a result
    assert results[calls[2]["correlation_id"]]["size"] > 16 << 20
    assert calls[3]["arguments"]["text"][:16] == "0123456789abcdef"


def _npx_filesystem_server(root: Path) -> list[str] | None:
    npx = shutil.which("npx")
    if npx is None:
        return None
    argv = [npx, "-y", "@modelcontextprotocol/server-filesystem", str(root)]
    try:
        # Fetch (or find in the npm cache) once, with a bounded wait, before the real test.
        subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    return argv


@pytest.mark.timeout(240)
def test_reference_filesystem_server_behind_proxy(tmp_path, workspace):
    server = _npx_filesystem_server(workspace)
    if server is None:
        pytest.skip(
            "npx is not installed or @modelcontextprotocol/server-filesystem cannot be fetched"
        )
    params = proxied(server, workspace)

    async def scenario() -> None:
        async with Client(params, mode="legacy") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            read_tool = "read_text_file" if "read_text_file" in names else "read_file"
            ok = await client.call_tool(read_tool, {"path": str(workspace / "main.py")})
            assert ok.is_error is False and "hello from the workspace" in ok.content[0].text
            with pytest.raises(MCPError) as denied:
                await client.call_tool(read_tool, {"path": "/home/alice/.ssh/id_ed25519"})
            assert denied.value.error.code == POLICY_DENIED
            assert denied.value.error.data["rule"] == "crown_jewel"
            # A file in the workspace that holds a (fake) AWS key: read, and redacted on
            # the way back by the built-in response rule.
            leaked = await client.call_tool(read_tool, {"path": str(workspace / "deploy.env")})
            text = leaked.content[0].text
            assert "AKIAIOSFODNN7EXAMPLE" not in text and "wJalrXUtnFEMI" not in text
            assert "[REDACTED:aws_access_key_id]" in text and "REGION=eu-west-1" in text

    (workspace / "deploy.env").write_text(
        "REGION=eu-west-1\nAWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    )
    anyio.run(scenario)


def test_sdk_client_sees_server_exit_as_error(tmp_path, workspace):
    """The raw server exits mid-call: the SDK client gets an error, not a hang."""
    server = [sys.executable, str(ROOT / "examples/servers/raw_server.py")]
    params = proxied(server, workspace)

    async def scenario() -> None:
        async with Client(params, mode="legacy") as client:
            with pytest.raises(MCPError):
                await client.call_tool("stop_server", {"status": 5})

    anyio.run(scenario)


def test_approval_through_elicitation_in_the_client(tmp_path, workspace):
    """An IDE-launched stdio proxy has no terminal: a client that declared elicitation is
    asked in its own UI, and the answer decides the held call (and is recorded)."""
    from mcp_types import ElicitResult

    rec = tmp_path / "rec.jsonl"
    params = proxied([*SDK_SERVER, str(workspace)], workspace, "--approval", "--record", str(rec))
    asked: list[str] = []

    async def elicit(context, params):  # noqa: ANN202
        asked.append(params.message)
        return ElicitResult(action="accept", content={"approve": "CLAUDE.md" in params.message})

    async def scenario() -> None:
        async with Client(params, mode="legacy", elicitation_callback=elicit) as client:
            ok = await client.call_tool(
                "write_file", {"path": str(workspace / "CLAUDE.md"), "content": "be nice"}
            )
            assert ok.is_error is False
            with pytest.raises(MCPError) as refused:
                await client.call_tool(
                    "write_file", {"path": str(workspace / "AGENTS.md"), "content": "x"}
                )
            assert refused.value.error.data["approval"] == "rejected"

    anyio.run(scenario)
    assert len(asked) == 2 and "instruction_file_write" in asked[0]
    assert (workspace / "CLAUDE.md").read_text() == "be nice"
    assert not (workspace / "AGENTS.md").exists()
    calls = [e for e in read_events(rec) if e["type"] == "tool_call"]
    assert [c["approval"] for c in calls] == ["approved", "rejected"]
