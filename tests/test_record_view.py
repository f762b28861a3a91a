"""`mcp-defense record view FILE`: a recording rendered as the flight recorder's timeline."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mcp_defense.cli.main import app
from mcp_defense.events.model import (
    FlowEvent,
    KillEvent,
    ServerExit,
    SessionStart,
    ToolCallEvent,
    ToolResultEvent,
)
from mcp_defense.events.record import JsonlWriter

runner = CliRunner()


def _call(
    cid: str,
    tool: str,
    args: dict,
    decision: str,
    rule: str = "",
    reason: str = "",
    ts: str = "",
    approval: str = "",
) -> ToolCallEvent:
    return ToolCallEvent(
        ts=ts,
        correlation_id=cid,
        agent_id="claude-code",
        archetype="filesystem",
        tool=tool,
        arguments=args,
        decision=decision,
        rule=rule,
        reason=reason,
        policy_version="v1",
        approval=approval,
    )


def write_recording(path: Path) -> None:
    """A session as the proxy records it: the flow of tc_2 arrives after tc_3 was decided."""
    t = "2026-04-24T12:00:0{}.000000Z".format
    events = [
        SessionStart(
            ts=t(0),
            session_id="ses_1",
            agent_id="claude-code",
            archetype="filesystem",
            policy_version="v1",
            server_command=["python", "srv.py"],
            server_pid=4242,
        ),
        _call("tc_1", "read_file", {"path": "/w/main.py"}, "allow", ts=t(1)),
        ToolResultEvent(ts=t(1), correlation_id="tc_1"),
        _call("tc_2", "summarize", {"path": "/w/notes.md"}, "allow", ts=t(2)),
        _call(
            "tc_3",
            "read\x1b[2J_file",
            {"path": "/home/a/.ssh/id_rsa\x1b]0;x\x07"},
            "deny",
            "crown_jewel",
            "crown jewel: /home/a/.ssh/id_rsa",
            ts=t(3),
        ),
        _call(
            "tc_4",
            "read_file",
            {"path": "/w/.env"},
            "require_approval",
            "sensitive_path",
            "approval required",
            ts=t(3),
            approval="rejected",
        ),
        FlowEvent(
            ts=t(4),
            src_ip="127.0.0.1",
            src_port=50000,
            dst_ip="10.9.9.9",
            dst_port=443,
            pid=4242,
            binary="/usr/bin/python3",
            source="procfs",
            correlation_ids=["tc_1", "tc_2"],
            verdict="kill",
            rule="egress_outside_archetype",
            reason="egress outside the filesystem archetype: 10.9.9.9:443",
        ),
        FlowEvent(
            ts=t(5),
            dst_ip="203.0.113.9",
            dst_port=4444,
            pid=77,
            orphan=True,
            verdict="alert",
            rule="orphan_flow",
            reason="flow that no tool call explains",
        ),
        KillEvent(
            ts=t(6),
            server_pid=4242,
            rule="egress_outside_archetype",
            reason="egress",
            correlation_ids=["tc_1", "tc_2"],
            killed_pids=[4242, 4243],
        ),
        ServerExit(ts=t(7), server_pid=4242, returncode=-9, pending_requests=1),
    ]
    w = JsonlWriter(str(path))
    for e in events:
        w.emit(e)
    w.close()


def test_view_renders_the_timeline_with_flows_under_their_call(tmp_path):
    rec = tmp_path / "rec.jsonl"
    write_recording(rec)
    result = runner.invoke(app, ["record", "view", str(rec)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "time",
        "decision",
        "correlation",
        "id",
        "archetype",
        "tool",
        "key",
        "argument",
    ]
    starts = [ln.split()[1] if ln[:2].isdigit() else ln.split()[0] for ln in lines[1:]]
    assert starts == [
        "SESSION",
        "ALLOW",
        "ALLOW",
        "└",
        "DENY",
        "↳",
        "REJECTED",
        "↳",
        "ORPHAN",
        "KILLED",
        "EXIT",
        "──",
    ]
    out = result.output
    flow = lines[4]
    # listed under its most recent call, naming every call whose window it fell in
    assert "→ 10.9.9.9:443" in flow and "KILL egress_outside_archetype" in flow
    assert "(tc_1, tc_2)" in flow and lines[3].split()[2] == "tc_2"
    assert "/w/main.py" in lines[2] and "/w/notes.md" in lines[3]
    assert "↳ crown_jewel: crown jewel: /home/a/.ssh/id_rsa" in out
    assert "ORPHAN" in out and "203.0.113.9:4444" in out and "orphan_flow" in out
    assert "server pid 4242 (+1 process(es) of its tree)" in out
    assert "exited -9, 1 pending request(s) answered with errors" in out
    assert lines[-1] == (
        "── 4 call(s): 2 allow, 1 approval, 1 deny · 2 flow(s), 1 orphan(s) · 1 kill(s)"
    )
    assert "\x1b" not in out and "\x07" not in out  # recorded text cannot drive the terminal
    assert "read\\x1b[2J_file" in out


def test_view_json_summary(tmp_path):
    rec = tmp_path / "rec.jsonl"
    write_recording(rec)
    result = runner.invoke(app, ["record", "view", "--format", "json", str(rec)])
    assert result.exit_code == 0
    got = json.loads(result.output)
    assert got["events"] == 10 and got["flows"] == 2 and got["orphans"] == 1
    assert got["kills"] == 1 and got["decisions"] == {"allow": 2, "deny": 1, "require_approval": 1}
    assert got["errors"] == []


def test_view_reports_bad_lines_with_their_number_and_exits_2(tmp_path):
    rec = tmp_path / "rec.jsonl"
    write_recording(rec)
    with rec.open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"type": "flow", "ts": 5, "correlation_ids": []}) + "\n")
        f.write(json.dumps({"type": "telepathy"}) + "\n")
    result = runner.invoke(app, ["record", "view", str(rec)])
    assert result.exit_code == 2
    for n in (11, 12, 13):
        assert f"{rec}:{n}:" in result.output.replace("\n", "")
    assert "KILLED" in result.output  # the good lines are still rendered


def test_view_missing_file_exits_2(tmp_path):
    result = runner.invoke(app, ["record", "view", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2 and "no such file" in " ".join(result.output.split())
