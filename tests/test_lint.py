"""`policy lint`: positioned diagnostics, never a traceback, three formats, exit codes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcp_defense.cli.main import app

DATA = Path(__file__).parent / "data" / "policies"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    # Diagnostics show paths relative to the cwd; run from tests/data so snapshots are stable.
    monkeypatch.chdir(DATA.parent)


class _Result:
    def __init__(self, r) -> None:
        self.exit_code = r.exit_code
        # the version hash changes with every edit of the built-in pack; keep snapshots stable
        self.output = re.sub(r"policy version [0-9a-f]{12}", "policy version <hash>", r.output)


def lint(*args: str):
    return _Result(
        runner.invoke(
            app,
            ["policy", "lint", *args, "--set", "workspace=/workspace", "--set", "home=/home/alice"],
        )
    )


def test_builtin_pack_is_clean() -> None:
    r = lint()
    assert r.exit_code == 0, r.output
    assert "0 error(s), 0 warning(s)" in r.output


def test_broken_policy_text(snapshot) -> None:
    r = lint("policies/broken.mcpd")
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    assert r.output == snapshot


def test_broken_policy_every_kind_of_error() -> None:
    r = lint("policies/broken.mcpd", "--format", "json")
    assert r.exit_code == 1
    codes = {d["code"] for d in json.loads(r.output)}
    assert codes >= {"import-not-found"}
    # imports fail first; without the missing import every other check runs
    src = (DATA / "broken.mcpd").read_text().replace('import "missing.mcpd"\n', "")
    p = DATA.parent / "broken_noimport.mcpd"
    p.write_text(src)
    try:
        r = lint(str(p.name), "--format", "json")
    finally:
        p.unlink()
    diags = json.loads(r.output)
    codes = {d["code"] for d in diags}
    assert {
        "unknown-level",
        "undefined-variable",
        "cel",
        "cel-type",
        "duplicate-rule",
        "unknown-archetype",
        "bad-action",
        "cel-cost",
        "unknown-rule",
    } <= codes, codes
    for d in diags:
        assert d["line"] > 0 and d["column"] > 0 and d["file"] == "broken_noimport.mcpd"


def test_broken_policy_full_text(snapshot) -> None:
    src = (DATA / "broken.mcpd").read_text().replace('import "missing.mcpd"\n', "")
    p = DATA.parent / "broken_full.mcpd"
    p.write_text(src)
    try:
        r = lint(p.name)
    finally:
        p.unlink()
    assert r.exit_code == 1
    assert r.output == snapshot


def test_warnings_only_exit_zero(snapshot) -> None:
    r = lint("policies/warnings.mcpd")
    assert r.exit_code == 0, r.output
    assert "never-fires" in r.output and "unused-jewels" in r.output
    assert r.output == snapshot


def test_github_format() -> None:
    r = lint("policies/broken.mcpd", "--format", "github")
    assert r.exit_code == 1
    assert r.output.startswith("::error file=policies/broken.mcpd,line=2,col=8,")


def test_usage_errors_exit_2() -> None:
    r = runner.invoke(app, ["policy", "lint", "--set", "novalue"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["policy", "lint", "--format", "xml"])
    assert r.exit_code == 2


def test_missing_file_is_an_error() -> None:
    r = lint("nope.mcpd")
    assert r.exit_code == 1
    assert "nope.mcpd:1:1: error: nope.mcpd: no such file" in r.output


def test_syntax_error_in_cli(tmp_path: Path) -> None:
    p = tmp_path / "s.mcpd"
    p.write_text('rule x {\n  when call.reads\n  deny "a" "b"\n}\n')
    r = lint(str(p))
    assert r.exit_code == 1
    assert f"{p}:3:12: error: unexpected '\"b\"'" in r.output
    assert r.output.count("^") == 1
    _ = os


# ---------------------------------------------------------------------------------------------
# Lint runs the compiler's checks only (check.CHECKS); a compile runs them and then the stages
# that build the table (compile.BUILD). Both report the same diagnostics.

_RESPONSE_AND_KINDS = """\
import "builtin:archetypes.mcpd"
default redact
response rule r1 {
  when result.is_error && call.args.x == 1
  kill
}
response rule r2 {
  when flow.dst_port == 1
  redact
}
rule r3 {
  when result.size > 3
  deny
}
flow rule r4 {
  when call.tool == "x"
  alert
}
"""


def _same_as_compile(paths: list[str]) -> None:
    from mcp_defense.policy.loader import check, load

    sets = {"workspace": "/workspace", "home": "/home/alice"}
    checked, loaded = check(paths, sets), load(paths, sets)
    assert checked.diagnostics == loaded.diagnostics
    assert checked.files == loaded.files
    assert checked.version == (loaded.table.version if loaded.table else None)


def test_lint_reports_what_a_compile_reports(tmp_path: Path) -> None:
    _same_as_compile([])
    _same_as_compile([str(DATA / "broken.mcpd")])
    _same_as_compile([str(DATA / "warnings.mcpd")])
    src = (DATA / "broken.mcpd").read_text().replace('import "missing.mcpd"\n', "")
    (tmp_path / "full.mcpd").write_text(src)
    _same_as_compile([str(tmp_path / "full.mcpd")])
    (tmp_path / "kinds.mcpd").write_text(_RESPONSE_AND_KINDS)
    _same_as_compile([str(tmp_path / "kinds.mcpd")])


def test_rules_read_only_what_their_kind_has(tmp_path: Path) -> None:
    p = tmp_path / "kinds.mcpd"
    p.write_text(_RESPONSE_AND_KINDS)
    r = lint(str(p), "--format", "json")
    assert r.exit_code == 1
    found = {(d["line"], d["code"]) for d in json.loads(r.output)}
    assert found == {
        (2, "bad-action"),  # default cannot be redact
        (5, "bad-action"),  # response rules cannot kill
        (8, "unavailable"),  # flow in a response rule
        (12, "unavailable"),  # result in a tool-call rule
        (16, "unavailable"),  # call in a flow rule
    }
    out = lint(str(p)).output
    assert "'result' is not available in a `rule` (tool-call rule)" in out
    assert "result is available in `response rule` only" in out


def test_a_redact_rule_without_a_reason_compiles(tmp_path: Path) -> None:
    from mcp_defense.policy.loader import load

    p = tmp_path / "r.mcpd"
    p.write_text(
        'import "builtin:archetypes.mcpd"\n'
        "response rule r {\n  when result.secrets.size() > 0\n  redact\n}\n"
    )
    result = load([str(p)])
    assert result.table is not None, result.diagnostics
    assert lint(str(p)).exit_code == 0


def test_stages_are_the_checks_then_the_build() -> None:
    from mcp_defense.policy import check, compile, schema

    assert compile.STAGES == tuple(n for n, _ in (*check.CHECKS, *compile.BUILD))
    assert set(schema.RULE_KINDS) == set(schema.RULE_SCOPES) == set(check.RULE_ACTIONS)


def test_listed_applies_to_tool_call_rules_only(tmp_path: Path) -> None:
    p = tmp_path / "listed.mcpd"
    p.write_text(
        'import "builtin:"\n'
        'rule keep priority 5 listed {\n  when call.tool == "x"\n  deny "x"\n}\n'
        'flow rule f listed {\n  when flow.dst_port == 22\n  alert "ssh"\n}\n'
    )
    r = lint(str(p), "--format", "json")
    assert r.exit_code == 1
    found = {(d["line"], d["code"]) for d in json.loads(r.output)}
    assert found == {(6, "bad-option")}
