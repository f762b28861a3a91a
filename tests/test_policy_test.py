"""`mcp-defense policy test`: inline tests, replay of recordings and transcripts, reporters.

Recordings here are built from `events.model` events decided by the built-in table, exactly
as the stdio proxy writes them; tests/test_policy_test_e2e.py records through the real proxy.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mcp_defense
from mcp_defense.cli.main import app
from mcp_defense.events.model import SessionStart, ToolCallEvent, ToolResultEvent
from mcp_defense.policy.facts import ToolCall

TS = "2025-01-01T00:00:00.000000Z"
HOME = "/home/alice"

STRICT = """\
import "builtin:rules.mcpd"

rule no_markdown_writes priority 85 {
  description "Docs are reviewed by humans: agents may not write markdown."
  when call.writes && call.paths.exists(p, p.endsWith(".md"))
  deny "markdown is read-only: {path}"
}
"""

TEAM = """\
import "builtin:rules.mcpd"

test "workspace read is allowed" {
  archetype filesystem
  call read_file {"path": "${workspace}/src/main.py"}
  expect allow
}

test "ssh key denied by the wrong rule" {
  archetype filesystem
  call read_file {"path": "~/.ssh/id_rsa"}
  expect deny by archetype_path
}
"""


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workspace variable (the calls never touch it, so it is fixed and reports are
    stable); cwd is tmp_path, where the recordings and policies are written."""
    monkeypatch.chdir(tmp_path)
    return Path("/srv/ws")


def _calls(ws: Path) -> list[tuple[str, str, dict]]:
    return [
        ("filesystem", "read_file", {"path": f"{ws}/src/main.py"}),
        ("filesystem", "write_file", {"path": f"{ws}/notes/todo.md", "content": "- ship"}),
        ("filesystem", "read_file", {"path": f"{HOME}/.aws/credentials"}),
        ("filesystem", "exec_command", {"command": "ls /"}),
        ("filesystem", "write_file", {"path": f"{ws}/README.md", "content": "# hi"}),
        ("filesystem", "read_file", {"path": f"{ws}/app/.env"}),
        ("filesystem", "list_directory", {"path": f"{ws}/src"}),
    ]


# Self-contained policies for the snapshot tests, so edits to the built-in pack do not move
# their line numbers.
BASE = """\
archetype filesystem {
  paths   "${workspace}/**"
  network none
  spawn   none
}

classify {
  tool "read_file", "list_directory" reads
  tool "write_file" writes
  tool "exec_command" spawns
  key "path" as path
  key "command" as command spawns
  key "content" as text
}

default allow "no rule matched"

rule outside_workspace priority 70 {
  when call.paths.exists(p, !archetype.allows_path(p))
  deny "path outside the workspace: {path}"
}

rule no_spawn priority 80 {
  when call.spawns
  deny "no processes"
}
"""

SNAP_STRICT = """\
import "base.mcpd"

rule no_markdown_writes priority 85 {
  when call.writes && call.paths.exists(p, p.endsWith(".md"))
  deny "markdown is read-only: {path}"
}

test "workspace read is allowed" {
  archetype filesystem
  call read_file {"path": "${workspace}/src/main.py"}
  expect allow
}

test "home read denied by the wrong rule" {
  archetype filesystem
  call read_file {"path": "/home/alice/.bashrc"}
  expect deny by no_spawn
}
"""


def record(
    ws: Path,
    path: Path,
    calls: list[tuple[str, str, dict]] | None = None,
    policy: list[Path] | None = None,
) -> Path:
    """Write a recording the way the stdio proxy does: session_start, then call + result."""
    table = mcp_defense.compile(policy, {"workspace": str(ws), "home": HOME})
    lines = [
        SessionStart(
            ts=TS,
            session_id="s1",
            agent_id="agent",
            archetype="filesystem",
            policy_version=table.version,
        ).to_dict()
    ]
    for i, (arch, tool, args) in enumerate(calls or _calls(ws)):
        cid = f"tc_{i:04d}"
        call = ToolCall(arch, tool, args, "agent", "s1", cid)
        lines.append(
            ToolCallEvent.decided(call, table.decide(call), ts=TS, request_id=i + 1).to_dict()
        )
        lines.append(ToolResultEvent(ts=TS, correlation_id=cid, request_id=i + 1).to_dict())
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def invoke(ws: Path, *args: str):
    runner = CliRunner()
    return runner.invoke(
        app, ["policy", "test", "--set", f"workspace={ws}", "--set", f"home={HOME}", *args]
    )


def normalise(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "<tmp>")
    return re.sub(r"\b[0-9a-f]{12}\b", "<version>", text)


# ---------------------------------------------------------------------------------------------
# inline tests


def test_builtin_pack_inline_tests_pass(ws: Path) -> None:
    # The pack's tests assume a shallow workspace ("../../home/alice/.ssh/…" from it).
    r = invoke(Path("/workspace"))  # no PATH: every inline test of the (built-in) policy
    assert r.exit_code == 0, r.output
    assert "ok: 10 inline test(s) passed" in r.stdout
    r = invoke(Path("/workspace"), str(Path(mcp_defense.__file__).parent.parent / "policies"))
    assert r.exit_code == 0, r.output
    assert "ok: 10 inline test(s) passed" in r.stdout


def test_inline_test_asserting_the_deciding_rule_fails_with_trace(ws: Path) -> None:
    (Path.cwd() / "team.mcpd").write_text(TEAM)
    r = invoke(ws, "team.mcpd")
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert "ssh key denied by the wrong rule" in out
    assert "team.mcpd:9" in out
    assert "expected deny by archetype_path, got deny by crown_jewel" in out
    assert "rules (in decision order)" in out  # the explain trace, without re-running
    assert "call.paths = ['/home/alice/.ssh/id_rsa']" in out
    assert "1 inline test(s) failed" in out
    # only team.mcpd's tests ran, not the imported pack's
    assert re.search(r"team\.mcpd\s+│\s+inline tests\s+│\s+2\s+│\s+1\s+│\s+1", out), out


def test_run_selects_cases_by_name(ws: Path) -> None:
    (Path.cwd() / "team.mcpd").write_text(TEAM)
    r = invoke(ws, "team.mcpd", "--run", "workspace read")
    assert r.exit_code == 0, r.output
    assert "ok: 1 inline test(s) passed" in r.stdout
    assert invoke(ws, "team.mcpd", "--run", "(").exit_code == 2


def test_policy_with_errors_exits_2(ws: Path) -> None:
    (Path.cwd() / "bad.mcpd").write_text('rule x {\n  when call.hostz\n  deny "x"\n}\n')
    r = invoke(ws, "bad.mcpd")
    assert r.exit_code == 2
    assert "bad.mcpd:2" in r.stderr


def test_missing_input_exits_2(ws: Path) -> None:
    r = invoke(ws, "nope.jsonl")
    assert r.exit_code == 2
    assert "nope.jsonl: no such file" in r.stderr


# ---------------------------------------------------------------------------------------------
# replay of recordings


def test_replay_unchanged_policy_exits_0(ws: Path) -> None:
    rec = record(ws, Path.cwd() / "session.jsonl")
    r = invoke(ws, "session.jsonl")
    assert r.exit_code == 0, r.output
    assert "ok: 0 inline test(s) passed, 7 call(s) replayed" in r.stdout
    assert "8 skipped" in r.stdout  # session_start + tool_results
    assert rec.exists()


def test_replay_stricter_policy_exits_1_and_names_changed_calls(ws: Path, snapshot) -> None:
    record(ws, Path.cwd() / "session.jsonl")
    (Path.cwd() / "strict.mcpd").write_text(STRICT)
    r = invoke(ws, "--policy", "strict.mcpd", "session.jsonl")
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert "Changed decisions: 2 call(s)" in out
    assert "allow (default) → deny by no_markdown_writes" in out
    assert "strict.mcpd:3" in out  # the rule's file:line
    assert "session.jsonl:4" in out and "session.jsonl:10" in out  # the recording lines
    assert f"{ws}/notes/todo.md" in out and f"{ws}/README.md" in out
    assert "rules (in decision order)" in out  # the trace of the first changed call
    assert "FAILED: 2 decision(s) changed" in out


def test_text_output_snapshot(ws: Path, snapshot) -> None:
    (Path.cwd() / "base.mcpd").write_text(BASE)
    (Path.cwd() / "strict.mcpd").write_text(SNAP_STRICT)
    record(ws, Path.cwd() / "session.jsonl", policy=[Path("base.mcpd")])
    r = invoke(ws, "strict.mcpd", "session.jsonl", "--coverage")
    assert r.exit_code == 1, r.output
    assert normalise(r.stdout, Path.cwd()) == snapshot


def test_no_fail_on_change_reports_but_exits_0(ws: Path) -> None:
    record(ws, Path.cwd() / "session.jsonl")
    (Path.cwd() / "strict.mcpd").write_text(STRICT)
    r = invoke(ws, "--policy", "strict.mcpd", "--no-fail-on-change", "session.jsonl")
    assert r.exit_code == 0, r.output
    assert "Changed decisions: 2 call(s)" in r.stdout
    assert "2 changed decision(s) not failing" in r.stdout


def test_hand_edited_expect_that_disagrees_exits_1(ws: Path) -> None:
    rec = record(ws, Path.cwd() / "session.jsonl")
    lines = rec.read_text().splitlines()
    ev = json.loads(lines[1])  # read_file main.py, recorded allow
    assert ev["decision"] == "allow"
    ev["expect"] = "deny"  # a reviewer says it should have been denied
    lines[1] = json.dumps(ev)
    rec.write_text("\n".join(lines) + "\n")
    r = invoke(ws, "session.jsonl")
    assert r.exit_code == 1, r.output
    assert "Calls not decided as expected (`expect`): 1 call(s)" in r.stdout
    assert "expected deny → got allow (default)" in r.stdout
    assert "session.jsonl:2" in r.stdout
    # an expect the policy meets overrides a recorded decision it no longer makes
    (Path.cwd() / "strict.mcpd").write_text(STRICT)
    ev = json.loads(lines[3])  # write_file notes/todo.md, recorded allow
    ev["expect"] = "deny"
    lines[3] = json.dumps(ev)
    lines[1] = json.dumps({k: v for k, v in json.loads(lines[1]).items() if k != "expect"})
    rec.write_text("\n".join(lines) + "\n")
    r = invoke(ws, "--policy", "strict.mcpd", "session.jsonl")
    assert r.exit_code == 1  # README.md still changed
    assert "Changed decisions: 1 call(s)" in r.stdout
    assert "not decided as expected" not in r.stdout


@pytest.mark.parametrize(
    "bad,message",
    [
        ("{not json", "not JSON"),
        ('{"type": "tool_call", "tool": "read_file"}', "missing required field(s)"),
        (
            '{"type": "tool_call", "correlation_id": "c", "agent_id": "a", "archetype": "filesystem", '
            '"tool": "read_file", "arguments": {}, "decision": "maybe", "rule": "", "reason": "", '
            '"policy_version": "v"}',
            "decision 'maybe'",
        ),
        (
            '{"type": "tool_call", "correlation_id": "c", "agent_id": "a", "archetype": 3, '
            '"tool": "read_file", "arguments": {}, "decision": "allow", "rule": "", "reason": "", '
            '"policy_version": "v"}',
            "'archetype' must be a string",
        ),
        ('{"type": "telepathy"}', "unknown event type"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_invalid_recording_line_exits_2_with_line_number(ws: Path, bad: str, message: str) -> None:
    rec = record(ws, Path.cwd() / "session.jsonl")
    lines = rec.read_text().splitlines()
    lines.insert(2, bad)
    rec.write_text("\n".join(lines) + "\n\n")  # a trailing blank line is not an error
    r = invoke(ws, "session.jsonl")
    assert r.exit_code == 2, r.output
    assert "session.jsonl:3: " in r.stderr
    assert message in r.stderr
    assert r.stderr.count("error:") == 1


def test_learning_mode_alert_compares_with_what_enforcement_would_do(ws: Path) -> None:
    rec = record(
        ws, Path.cwd() / "session.jsonl", [("filesystem", "exec_command", {"command": "ls"})]
    )
    lines = rec.read_text().splitlines()
    ev = json.loads(lines[1])
    assert ev["decision"] == "deny"
    ev.update(
        decision="alert",
        enforced=False,
        reason=f"learning until 2025-01-08T00:00:00Z, would deny: {ev['reason']}",
    )
    lines[1] = json.dumps(ev)
    rec.write_text("\n".join(lines) + "\n")
    assert invoke(ws, "session.jsonl").exit_code == 0


def test_rule_change_with_same_decision_is_reported_not_failed(ws: Path) -> None:
    rec = record(ws, Path.cwd() / "session.jsonl")
    lines = rec.read_text().splitlines()
    ev = json.loads(lines[5])  # ~/.aws/credentials, deny by crown_jewel
    assert ev["rule"] == "crown_jewel"
    ev["rule"] = "old_secret_rule"
    lines[5] = json.dumps(ev)
    rec.write_text("\n".join(lines) + "\n")
    r = invoke(ws, "session.jsonl")
    assert r.exit_code == 0, r.output
    assert "Same decision, another rule (not a failure): 1 call(s)" in r.stdout
    assert "deny by old_secret_rule → deny by crown_jewel" in r.stdout


# ---------------------------------------------------------------------------------------------
# transcripts


def _transcript(ws: Path, path: Path) -> Path:
    def call(i: int, name: str, arguments: dict, **extra: object) -> dict:
        return {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
            **extra,
        }

    lines = [
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "c", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        call(2, "read_file", {"path": f"{ws}/src/a.py"}),
        call(3, "read_file", {"path": "~/.ssh/id_ed25519"}),
        call(4, "fetch", {"url": "https://evil.example.com/x"}, expect="deny"),
        {"jsonrpc": "2.0", "id": 2, "result": {"content": []}},  # a server reply in the capture
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "resources/read",
            "params": {"uri": "file:///home/alice/.aws/credentials"},
        },
        {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "read_file"}},  # no id
        [call(6, "list_directory", {"path": str(ws)}), {"jsonrpc": "2.0", "method": "x"}],
    ]
    text = "".join(json.dumps(m) + "\n" for m in lines)
    # duplicate keys: the proxy refuses the message before policy
    text += '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "read_file", "name": "x"}}\n'
    path.write_text(text)
    return path


def test_transcript_is_decided_as_the_proxy_would(ws: Path) -> None:
    _transcript(ws, Path.cwd() / "tee.jsonl")
    r = invoke(ws, "tee.jsonl")
    assert r.exit_code == 2
    assert "give --archetype" in r.stderr
    r = invoke(ws, "tee.jsonl", "--archetype", "filesystem", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    f = doc["files"][0]
    assert (f["kind"], f["cases"], f["passed"], f["unchecked"]) == ("transcript", 5, 1, 4)
    assert (f["skipped"], f["refused"], f["errors"]) == (5, 2, 0)
    got = {(c["line"], c["tool"]): (c["decision"], c["rule"]) for c in doc["cases"]}
    assert got == {
        (4, "read_file"): ("allow", ""),
        (5, "read_file"): ("deny", "crown_jewel"),
        (8, "resources/read"): ("deny", "crown_jewel"),
        (10, "list_directory"): ("allow", ""),
    }
    r = invoke(ws, "tee.jsonl", "--archetype", "filesystem")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "Transcript calls the policy would not simply allow" in out
    assert "deny by crown_jewel" in out and "tee.jsonl:5" in out and "tee.jsonl:8" in out
    assert "4 without expectation, 5 skipped, 2 refused before policy" in out
    r = invoke(ws, "tee.jsonl", "--archetype", "nosuch")
    assert r.exit_code == 2


def test_transcript_line_that_is_not_json_exits_2(ws: Path) -> None:
    t = _transcript(ws, Path.cwd() / "tee.jsonl")
    t.write_text(t.read_text() + "Content-Length: 52\n")
    r = invoke(ws, "tee.jsonl", "--archetype", "filesystem")
    assert r.exit_code == 2
    assert "tee.jsonl:12: not JSON" in r.stderr


def test_unrecognised_jsonl_exits_2(ws: Path) -> None:
    (Path.cwd() / "x.jsonl").write_text('{"hello": 1}\n')
    r = invoke(ws, "x.jsonl")
    assert r.exit_code == 2
    assert "x.jsonl:1: neither a recording event" in r.stderr


# ---------------------------------------------------------------------------------------------
# coverage


def test_coverage_lists_never_fired_rules_by_file_and_line(ws: Path) -> None:
    record(ws, Path.cwd() / "session.jsonl")
    r = invoke(ws, "session.jsonl", "--coverage")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "rule coverage: 3/" in out  # crown_jewel, archetype_no_spawn, sensitive_path
    assert re.search(r"never fired \(\d+\):", out)
    assert re.search(r"builtin:rules\.mcpd:\d+: metadata_endpoint", out)
    assert "(default)" in out
    r = invoke(ws, "session.jsonl", "--threshold", "90")
    assert r.exit_code == 1
    assert "below 90%" in r.stdout
    assert re.search(r"builtin:rules\.mcpd:\d+: internal_destination", r.stdout)
    assert invoke(ws, "session.jsonl", "--threshold", "0").exit_code == 0
    assert invoke(ws, "session.jsonl", "--threshold", "101").exit_code == 2


def test_builtin_pack_inline_tests_coverage(ws: Path) -> None:
    r = invoke(Path("/workspace"), "--format", "json", "--coverage")
    assert r.exit_code == 0, r.output
    cov = json.loads(r.stdout)["coverage"]
    fired = {x["rule"] for x in cov["rules"] if x["hits"]}
    assert {
        "crown_jewel",
        "metadata_endpoint",
        "archetype_no_spawn",
        "sensitive_path",
        "archetype_no_network",
        "instruction_file_write",
    } <= fired
    assert all(x["line"] > 0 for x in cov["never_fired"] if x["kind"] != "folded")
    assert cov["engine"]["(default)"] == 2


# ---------------------------------------------------------------------------------------------
# formats


def test_json_format(ws: Path) -> None:
    record(ws, Path.cwd() / "session.jsonl")
    (Path.cwd() / "strict.mcpd").write_text(STRICT)
    r = invoke(ws, "--policy", "strict.mcpd", "session.jsonl", "--format", "json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 1 and doc["ok"] is False
    assert doc["files"][0]["changed"] == 2 and doc["files"][0]["passed"] == 5
    changed = [c for c in doc["cases"] if c["status"] == "changed"]
    assert [(c["line"], c["recorded"], c["decision"], c["rule"]) for c in changed] == [
        (4, "allow", "deny", "no_markdown_writes"),
        (10, "allow", "deny", "no_markdown_writes"),
    ]
    assert changed[0]["key_argument"] == f"{ws}/notes/todo.md"
    assert changed[0]["trace"]["decision"]["rule"] == "no_markdown_writes"


def test_junit_format(ws: Path, snapshot) -> None:
    (Path.cwd() / "base.mcpd").write_text(BASE)
    (Path.cwd() / "strict.mcpd").write_text(SNAP_STRICT)
    record(ws, Path.cwd() / "session.jsonl", policy=[Path("base.mcpd")])
    r = invoke(ws, "strict.mcpd", "session.jsonl", "--format", "junit")
    assert r.exit_code == 1, r.output
    root = ET.fromstring(r.stdout)
    assert root.get("tests") == "9" and root.get("failures") == "3"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"strict.mcpd", "session.jsonl"}
    inline = suites["strict.mcpd"].findall("testcase")
    assert [(t.get("name"), t.get("line")) for t in inline] == [
        ("workspace read is allowed", "8"),
        ("home read denied by the wrong rule", "14"),
    ]
    failing = [
        t for t in suites["session.jsonl"].findall("testcase") if t.find("failure") is not None
    ]
    assert [t.get("line") for t in failing] == ["4", "10"]
    assert "rules (in decision order)" in failing[0].find("failure").text
    assert normalise(r.stdout, Path.cwd()) == snapshot


def test_github_format(ws: Path) -> None:
    record(ws, Path.cwd() / "session.jsonl")
    (Path.cwd() / "strict.mcpd").write_text(STRICT)
    r = invoke(ws, "--policy", "strict.mcpd", "session.jsonl", "--format", "github", "--coverage")
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    changed = [ln for ln in lines if "title=mcpd decision changed" in ln]
    assert changed[0].startswith("::error file=session.jsonl,line=4,title=")
    assert (
        "write_file" in changed[0] and "allow (default) → deny by no_markdown_writes" in changed[0]
    )
    # rules of the built-in pack are not files of the repository: annotated without a file
    assert any(
        ln.startswith("::notice title=mcpd rule never fired::builtin:rules.mcpd:") for ln in lines
    )
    assert lines[-1].startswith("FAILED: 2 decision(s) changed")
    r = invoke(
        ws, "--policy", "strict.mcpd", "session.jsonl", "--format", "github", "--no-fail-on-change"
    )
    assert r.exit_code == 0
    assert "::warning file=session.jsonl,line=4," in r.stdout


def test_directory_of_recordings_and_policies(ws: Path) -> None:
    (Path.cwd() / "recordings").mkdir()
    record(ws, Path.cwd() / "recordings" / "mon.jsonl")
    record(ws, Path.cwd() / "recordings" / "tue.jsonl")
    (Path.cwd() / "policy").mkdir()
    (Path.cwd() / "policy" / "team.mcpd").write_text(TEAM)
    r = invoke(ws, "policy", "recordings", "--run", "workspace read|jsonl")
    assert r.exit_code == 0, r.output
    assert "ok: 1 inline test(s) passed, 14 call(s) replayed" in r.stdout
    (Path.cwd() / "empty").mkdir()
    r = invoke(ws, "empty")
    assert r.exit_code == 2
    assert "contains no .mcpd or .jsonl files" in r.stderr


def test_github_actions_example_commands_run(ws: Path) -> None:
    """The example workflow's lint and test steps, as written, on a small policy repo."""
    import shlex

    import yaml

    wf = yaml.safe_load(
        (
            Path(mcp_defense.__file__).parent.parent
            / "examples"
            / "github-actions"
            / "policy-ci.yml"
        ).read_text()
    )
    job = wf["jobs"]["policy"]
    sets = f"--set workspace={ws} --set home={HOME}"
    (Path.cwd() / "policies").mkdir()
    (Path.cwd() / "policies" / "team.mcpd").write_text(
        TEAM.replace("archetype_path", "crown_jewel")
    )
    (Path.cwd() / "recordings").mkdir()
    record(ws, Path.cwd() / "recordings" / "session.jsonl")
    runner = CliRunner()
    codes = {}
    for step in job["steps"]:
        cmd = step.get("run", "")
        if not cmd.startswith("mcp-defense policy"):
            continue
        argv = shlex.split(cmd.replace("$MCPD_SETS", sets).split(">")[0])[1:]
        r = runner.invoke(app, argv)
        codes[step["name"]] = r.exit_code
        if "--format" in argv and argv[argv.index("--format") + 1] == "github":
            assert "mcpd test failed" not in r.stdout and "decision changed" not in r.stdout
            assert ("title=mcpd coverage::" in r.stdout) == (argv[1] == "test")
    assert job["env"]["MCPD_SETS"].startswith("--set workspace=")
    # coverage of the pack is below 80 % with this little traffic: the test step says so
    assert codes == {
        "Lint policies": 0,
        "Test policies (inline tests + recorded sessions)": 1,
        "JUnit report": 0,
    }


def test_progress_bar_only_on_a_terminal_for_long_replays() -> None:
    from mcp_defense.cli.policy_test import PROGRESS_MIN_BYTES, _progress

    with _progress(PROGRESS_MIN_BYTES * 10, enabled=False) as p:
        assert p is None
    with _progress(100, enabled=True) as p:
        assert p is None
    with _progress(PROGRESS_MIN_BYTES * 10, enabled=True) as p:
        assert p is not None
        p(PROGRESS_MIN_BYTES)


def test_invalid_lines_in_json_and_github_formats(ws: Path) -> None:
    rec = record(ws, Path.cwd() / "session.jsonl")
    rec.write_text(rec.read_text() + "{oops\n")
    r = invoke(ws, "session.jsonl", "--format", "json")
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["errors"] == [
        {"file": "session.jsonl", "line": 16, "message": doc["errors"][0]["message"]}
    ]
    assert doc["exit_code"] == 2
    r = invoke(ws, "session.jsonl", "--format", "github")
    assert r.exit_code == 2
    assert r.stdout.startswith(
        "::error file=session.jsonl,line=16,title=mcpd invalid input::not JSON"
    )
