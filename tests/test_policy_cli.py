"""`policy eval | explain | compile | bench` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mcp_defense.cli.main import app

runner = CliRunner()
SETS = ["--set", "workspace=/workspace", "--set", "home=/home/alice"]


def call(tool: str, args, arch: str | None = "filesystem", rid=None) -> str:
    obj: dict = {"params": {"name": tool, "arguments": args}}
    if arch:
        obj["archetype"] = arch
    if rid is not None:
        obj.update({"jsonrpc": "2.0", "id": rid, "method": "tools/call"})
    return json.dumps(obj)


def test_eval_one_line_out_per_line_in_order() -> None:
    lines = [
        call("read_file", {"path": "/workspace/main.py"}, rid=1),
        "this is not json",
        "",
        call("read_file", {"path": "~/.ssh/id_ed25519"}, rid="x"),
        json.dumps({"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {}}),
        call("exec_command", {"command": "ls /"}, arch=None),
        call("read_file", {"path": "/workspace/a"}, arch="nosuch"),
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "t", "arguments": [1]},
                "archetype": "filesystem",
            }
        ),
        '{"a": ' * 200 + "1" + "}" * 200,
    ]
    r = runner.invoke(
        app, ["policy", "eval", "--archetype", "filesystem", *SETS], input="\n".join(lines) + "\n"
    )
    assert r.exit_code == 0, r.output
    out = [json.loads(x) for x in r.output.splitlines()]
    assert len(out) == len(lines)
    got = [(o["decision"], o["rule"], o.get("id")) for o in out]
    assert got == [
        ("allow", "", 1),
        ("deny", "malformed_input", None),
        ("deny", "malformed_input", None),
        ("deny", "crown_jewel", "x"),
        ("deny", "malformed_input", 9),
        ("deny", "archetype_no_spawn", None),
        ("deny", "unknown_archetype", None),
        ("deny", "malformed_arguments", 3),
        ("deny", "malformed_input", None),
    ]
    assert {o["policy_version"] for o in out} == {out[0]["policy_version"]}
    assert set(out[0]) == {"decision", "rule", "reason", "policy_version", "id"}


def test_eval_reads_a_file_and_line_archetype_overrides_flag(tmp_path) -> None:
    p = tmp_path / "calls.jsonl"
    p.write_text(call("fetch", {"url": "https://api.github.com/repos/x/y"}, arch="github") + "\n")
    r = runner.invoke(app, ["policy", "eval", str(p), "--archetype", "filesystem", *SETS])
    assert json.loads(r.output)["decision"] == "allow"


def test_eval_policy_error_is_exit_2(tmp_path) -> None:
    bad = tmp_path / "bad.mcpd"
    bad.write_text("rule x {\n  when call.nope\n  deny\n}\n")
    r = runner.invoke(app, ["policy", "eval", "--policy", str(bad)], input="{}\n")
    assert r.exit_code == 2
    r = runner.invoke(app, ["policy", "eval", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 2


def test_explain_text(snapshot, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    line = call("read_file", {"path": "app/../../../home/alice/.ssh/id_rsa"})
    r = runner.invoke(app, ["policy", "explain", *SETS], input=line + "\n")
    assert r.exit_code == 0, r.output
    assert "deciding clause" in r.output
    assert r.output == snapshot


def test_explain_json(snapshot) -> None:
    line = call("write_file", {"path": "/workspace/CLAUDE.md", "content": "x"})
    r = runner.invoke(app, ["policy", "explain", "--format", "json", *SETS], input=line + "\n")
    data = json.loads(r.output)
    assert data["decision"]["rule"] == "instruction_file_write"
    assert data["facts"]["paths"] == ["/workspace/CLAUDE.md"] and data["facts"]["writes"]
    decided = [x for x in data["rules"] if x["status"] == "decided"]
    assert [x["name"] for x in decided] == ["instruction_file_write"]
    data["decision"]["policy_version"] = "<hash>"
    assert data == snapshot


def test_explain_names_the_clause_of_a_disjunction(tmp_path) -> None:
    p = tmp_path / "p.mcpd"
    p.write_text(
        'import "builtin:archetypes.mcpd"\nimport "builtin:classify.mcpd"\n'
        'rule either {\n  when call.spawns || call.tool == "danger"\n  deny "no"\n}\n'
    )
    r = runner.invoke(
        app,
        ["policy", "explain", "--format", "json", "--policy", str(p), *SETS],
        input=call("danger", {}) + "\n",
    )
    data = json.loads(r.output)
    assert data["deciding_clause"] == 'call.tool == "danger"'


def test_compile_summary_json() -> None:
    r = runner.invoke(app, ["policy", "compile", "--format", "json", *SETS])
    assert r.exit_code == 0
    data = json.loads(r.output)
    assert set(data["archetypes"]) == {
        "filesystem",
        "github",
        "database",
        "web-fetch",
        "shell",
        "code-execution",
        "generic",
    }
    assert "archetype_no_network" in data["archetypes"]["web-fetch"]["dropped"]
    assert len(data["version"]) == 12


@pytest.mark.timeout(300)
def test_bench_prints_figures() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcp_defense",
            "policy",
            "bench",
            "--n",
            "200",
            "--lines",
            "200",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["median_us"] > 0 and data["eval_calls_per_s"] > 0


def test_parallel_eval_keeps_order_and_matches_one_process() -> None:
    lines = []
    for i in range(5000):  # more than one chunk, so worker processes really run
        if i % 997 == 0:
            lines.append("not json")
        elif i % 2:
            lines.append(call("read_file", {"path": f"/workspace/f{i}.py"}, rid=i))
        else:
            lines.append(call("read_file", {"path": f"/home/alice/.ssh/id_{i}"}, rid=i))
    data = "\n".join(lines) + "\n"
    one = runner.invoke(app, ["policy", "eval", "-j", "1", *SETS], input=data)
    two = runner.invoke(app, ["policy", "eval", "-j", "2", *SETS], input=data)
    assert one.exit_code == two.exit_code == 0
    assert one.output == two.output
    out = [json.loads(x) for x in two.output.splitlines()]
    assert len(out) == len(lines)
    assert [o.get("id") for o in out if "id" in o] == [i for i in range(5000) if i % 997]
