"""Lint warns about fields that may be absent and that no `has()` guards (issue 18): such a
rule fails on every call without the field, which denies it with `rule_error`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.cel_env import make_env

from mcp_defense.policy import cel

ENV = make_env()


def warnings(src: str) -> list[tuple[int, int, str]]:
    return [
        (w.line, w.column, w.message.split(" may be absent")[0])
        for w in cel.unguarded(cel.parse(src), ENV)
    ]


@pytest.mark.parametrize(
    "src, want",
    [
        ("call.args.x == 1", [(1, 1, "call.args.x")]),
        ('call.args["x"] == 1', [(1, 1, "call.args.x")]),
        ("call.writes && call.args.x.y == 1", [(1, 16, "call.args.x.y")]),
        ("has(call.args.x) && call.args.x.y == 1", [(1, 21, "call.args.x.y")]),
        ("has(call.args.x.y)", [(1, 5, "call.args.x")]),  # has() fails when x is absent
        ("has(call.args.x) || call.args.x == 1", [(1, 21, "call.args.x")]),
        ("call.args.items.exists(i, i.k == 1)", [(1, 1, "call.args.items"), (1, 27, "i.k")]),
        (
            "call.annotations.readOnlyHint == true || call.annotations.destructiveHint == false",
            [(1, 1, "call.annotations.readOnlyHint"), (1, 42, "call.annotations.destructiveHint")],
        ),
        ("call.writes &&\n  call.args.mode == 'w'", [(2, 3, "call.args.mode")]),
    ],
)
def test_unguarded_fields_are_found(src: str, want: list[tuple[int, int, str]]) -> None:
    assert warnings(src) == want


@pytest.mark.parametrize(
    "src",
    [
        "has(call.args.x) && call.args.x == 1",
        "call.args.x == 1 && has(call.args.x)",  # && is commutative over errors in CEL
        "!has(call.args.x) || call.args.x == 1",
        "has(call.args.x) ? call.args.x == 1 : false",
        "!has(call.args.x) ? false : call.args.x == 1",
        '"x" in call.args && call.args.x == 1',
        "has(call.args.x) && has(call.args.x.y) && call.args.x.y == 1",
        "has(call.args.items) && call.args.items.exists(i, has(i.k) && i.k == 1)",
        "call.tool == 'x' && (has(call.args.p) && call.args.p.startsWith('/'))",
        'call.paths.exists(p, jewel(p) == "crown") && call.writes',  # record fields are there
        "size(call.args) > 2 && call.args != {}",
    ],
)
def test_guarded_fields_are_not_reported(src: str) -> None:
    assert warnings(src) == []


def test_the_builtin_pack_guards_its_fields() -> None:
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [sys.executable, "-m", "mcp_defense.cli.main", "policy", "lint", str(root / "policies")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "unguarded-field" not in r.stdout + r.stderr


def test_lint_warns_with_the_position(tmp_path: Path) -> None:
    p = tmp_path / "x.mcpd"
    p.write_text(
        'rule x_is_one {\n  when call.tool == "run" &&\n       call.args.x == 1\n  deny "x"\n}\n'
    )
    r = subprocess.run(
        [sys.executable, "-m", "mcp_defense.cli.main", "policy", "lint", str(p)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out  # a warning, not an error
    assert f"{p}:3:8: warning: call.args.x may be absent" in out
    assert "[unguarded-field]" in out and "has(call.args.x)" in out
    assert "1 warning(s)" in out
