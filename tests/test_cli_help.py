"""`--help` of every command, as snapshots: a flag or exit-code change is a visible diff."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from mcp_defense.cli.main import app


def _commands() -> list[list[str]]:
    root = typer.main.get_command(app)
    out: list[list[str]] = [[]]

    def walk(cmd: object, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)  # a group (typer vendors its own click)
        if subs:
            for name, sub in sorted(subs.items()):
                out.append([*path, name])
                walk(sub, [*path, name])

    walk(root, [])
    return out


COMMANDS = _commands()


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c) or "mcp-defense" for c in COMMANDS])
def test_help_snapshot(argv: list[str], snapshot) -> None:  # noqa: ANN001
    r = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    assert "Exit code" in r.output or argv == [] or len(argv) == 1, "exit codes documented"
    assert r.output == snapshot


def test_every_command_documents_exit_codes() -> None:
    missing = []
    for argv in COMMANDS:
        r = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "100"})
        if "exit code" not in r.output.lower():
            missing.append(" ".join(argv))
    assert missing == []
