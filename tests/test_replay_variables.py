"""A recording carries the policy variables it ran under; `policy test` says when a replay runs
under other ones (a different workspace moves every relative path)."""

from __future__ import annotations

import json
from pathlib import Path

from support.stdio_helpers import RAW_SERVER, Proc, call, proxy_argv, read_events
from typer.testing import CliRunner

from mcp_defense.cli.main import app


def _record(tmp_path: Path) -> Path:
    rec = tmp_path / "rec.jsonl"
    p = Proc(proxy_argv(RAW_SERVER, "--record", str(rec), workspace="/w/a"), tmp_path)
    p.initialize()
    p.request(call(1, "read_file", {"path": "src/main.py"}))
    p.close_stdin()
    assert p.wait() == 0, p.stderr()
    return rec


def test_session_start_records_the_variables(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    start = [e for e in read_events(rec) if e["type"] == "session_start"]
    assert start and start[0]["variables"]["workspace"] == "/w/a"


def test_replay_under_other_variables_warns(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    runner = CliRunner()
    same = runner.invoke(
        app, ["policy", "test", str(rec), "--set", "workspace=/w/a", "--format", "json"]
    )
    other = runner.invoke(
        app, ["policy", "test", str(rec), "--set", "workspace=/w/b", "--format", "json"]
    )
    (f_same,) = [f for f in json.loads(same.output)["files"] if f["path"].endswith("rec.jsonl")]
    (f_other,) = [f for f in json.loads(other.output)["files"] if f["path"].endswith("rec.jsonl")]
    assert not any("other variables" in w for w in f_same["warnings"])
    assert any("workspace=/w/a (now /w/b)" in w for w in f_other["warnings"])


def test_replay_reports_the_recorded_policy_version(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    version = [e for e in read_events(rec) if e["type"] == "session_start"][0]["policy_version"]
    r = CliRunner().invoke(
        app, ["policy", "test", str(rec), "--set", "workspace=/w/a", "--format", "json"]
    )
    (f,) = [f for f in json.loads(r.output)["files"] if f["path"].endswith("rec.jsonl")]
    assert f["recorded_versions"] == [version]


def test_a_replay_with_no_calls_fails_unless_allowed(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    runner = CliRunner()
    r = runner.invoke(app, ["policy", "test", str(empty)])
    assert r.exit_code == 1, r.output
    assert "no call was replayed" in r.output and "--allow-empty" in r.output
    r = runner.invoke(app, ["policy", "test", str(empty), "--allow-empty"])
    assert r.exit_code == 0, r.output
    rec = _record(tmp_path)
    r = runner.invoke(app, ["policy", "test", str(rec), "--set", "workspace=/w/a"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["policy", "test", str(rec), "--run", "nothing-matches-this"])
    assert r.exit_code == 1, r.output
