"""`--audit-log` hash chain and `mcp-defense audit verify`: each kind of edit is named at the
first line it touches; an intact log says so with its count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcp_defense.cli.main import app
from mcp_defense.events.audit import GENESIS, AuditLog, line_hash, verify
from mcp_defense.events.model import AuditHead, ToolCallEvent

runner = CliRunner()


def write_log(path: Path, n: int = 6, heads: list | None = None) -> None:
    log = AuditLog(str(path), forward=(heads.append if heads is not None else None), head_every=4)
    for i in range(n):
        log.emit(
            ToolCallEvent(
                correlation_id=f"tc_{i}",
                agent_id="a",
                archetype="filesystem",
                tool="read_file",
                arguments={"path": f"/w/{i}", "password": "hunter2"},
                decision="allow",
                rule="",
                reason="",
                policy_version="v",
            )
        )
    log.close()


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_intact_log_and_its_chain(tmp_path):
    p = tmp_path / "audit.jsonl"
    heads: list[AuditHead] = []
    write_log(p, heads=heads)
    rows = [json.loads(x) for x in lines(p)]
    assert [r["audit_seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["audit_prev"] == GENESIS
    assert rows[3]["audit_prev"] == line_hash(lines(p)[2])
    assert all(r["arguments"]["password"] == "<masked>" for r in rows)
    v = verify(p)
    assert v.intact and v.lines == 6 and v.head == line_hash(lines(p)[-1])
    assert [(h.lines, h.hash) for h in heads] == [(4, line_hash(lines(p)[3])), (6, v.head)]
    # A second session continues the same chain.
    write_log(p, n=2)
    assert verify(p).intact and verify(p).lines == 8
    result = runner.invoke(app, ["audit", "verify", str(p)])
    assert result.exit_code == 0 and "intact" in result.output and "8 line(s)" in result.output


def tamper(kind: str, rows: list[bytes]) -> list[bytes]:
    rows = list(rows)
    if kind == "edited":
        rows[2] = rows[2].replace(b"/w/2", b"/w/X")
    elif kind == "deleted":
        del rows[2]
    elif kind == "reordered":
        rows[2], rows[3] = rows[3], rows[2]
    elif kind == "inserted":
        rows.insert(4, rows[1])
    elif kind == "truncated":
        rows[-1] = rows[-1][:20]
    elif kind == "not_json":
        rows[2] = b"garbage\n"
    return rows


@pytest.mark.parametrize(
    "kind, bad_line",
    [
        ("edited", 3),
        ("deleted", 3),
        ("reordered", 3),
        ("inserted", 5),
        ("truncated", 6),
        ("not_json", 3),
    ],
)
def test_each_kind_of_tampering_is_named_at_its_line(tmp_path, kind, bad_line):
    p = tmp_path / "audit.jsonl"
    write_log(p)
    p.write_bytes(b"".join(tamper(kind, lines(p))))
    v = verify(p)
    assert not v.intact and v.problem == kind and v.bad_line == bad_line, v
    result = runner.invoke(app, ["audit", "verify", str(p)])
    assert result.exit_code == 1
    assert f"{p}:{bad_line}" in result.output and "TAMPERED" in result.output
    js = runner.invoke(app, ["audit", "verify", "--format", "json", str(p)])
    out = json.loads(js.output)
    assert js.exit_code == 1 and out["bad_line"] == bad_line and out["problem"] == kind


def test_cut_off_tail_and_edited_last_line_need_the_chain_head(tmp_path):
    p = tmp_path / "audit.jsonl"
    heads: list[AuditHead] = []
    write_log(p, heads=heads)
    head = heads[-1]
    spec = f"{head.lines}:{head.hash}"
    original = lines(p)
    p.write_bytes(b"".join(original[:-2]))  # whole lines cut off: a valid, shorter chain
    assert verify(p).intact
    v = verify(p, head=head.hash, lines=head.lines)
    assert not v.intact and v.problem == "truncated" and v.bad_line == 5
    result = runner.invoke(app, ["audit", "verify", "--head", spec, str(p)])
    assert result.exit_code == 1 and "truncated" in result.output
    p.write_bytes(b"".join(original[:-1] + [original[-1].replace(b"/w/5", b"/w/6")]))
    v = verify(p, head=head.hash, lines=head.lines)
    assert not v.intact and v.problem == "edited" and v.bad_line == 6
    p.write_bytes(b"".join(original))
    result = runner.invoke(app, ["audit", "verify", "--head", spec, str(p)])
    assert result.exit_code == 0, result.output


def test_unreadable_log_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["audit", "verify", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
