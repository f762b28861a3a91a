"""`mcp-defense policy watch`: a save re-runs lint and the inline tests (piped: plain reports)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.reload_policy import save_atomic

ROOT = Path(__file__).resolve().parents[1]

POLICY = """archetype ws {
  paths any
  network any
  spawn any
}
default allow "no rule matched"

rule no_rm {
  when call.tool == "rm"
  deny "no rm"
}

test "rm is denied" {
  archetype ws
  call rm {"path": "/x"}
  expect deny by no_rm
}
"""


class Output:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.text = ""

    def wait_for(self, needle: str, timeout: float = 30.0) -> str:
        """Read until `needle` shows up after what was already consumed; return the new text."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        start = len(self.text)
        while needle not in self.text[start:]:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"{needle!r} not in output:\n{self.text}")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise AssertionError(f"exited before {needle!r}:\n{self.text}")
            self.text += chunk.decode(errors="replace")
        out = self.text[start:]
        return out


def test_watch_reruns_lint_and_inline_tests_on_save(tmp_path: Path) -> None:
    pol = tmp_path / "main.mcpd"
    pol.write_text(POLICY)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_defense.cli.main", "policy", "watch", str(pol)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )
    out = Output(proc)
    try:
        first = out.wait_for("(Ctrl-C to stop)")
        assert "✓ 1/1 inline tests pass" in first
        save_atomic(pol, POLICY.replace('"rm"', '"rmdir"'))
        second = out.wait_for("(Ctrl-C to stop)")
        assert "✗ 0/1 inline tests pass" in second and "rules +0 -0 ~1" in second
        assert "main.mcpd:13:" in second  # where the failing test is
        save_atomic(pol, POLICY + "rule broken {\n  when call.nope == 1\n")
        third = out.wait_for("(Ctrl-C to stop)")
        assert "main.mcpd:" in third and "error" in third
        assert "does not compile" in third
        save_atomic(pol, POLICY)
        fourth = out.wait_for("(Ctrl-C to stop)")
        assert "✓ 1/1 inline tests pass" in fourth
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0, out.text


TEAM = """import "builtin:"

test "my own test" {
  archetype filesystem
  call read_file {"path": "${workspace}/a.txt"}
  expect allow
}
"""


def _watch_count(argv: list[str], cwd: Path) -> str:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_defense.cli.main", "policy", "watch", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )
    out = Output(proc)
    try:
        first = out.wait_for("(Ctrl-C to stop)")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    import re

    m = re.search(r"(\d+)/(\d+) inline tests pass", first)
    assert m is not None, first
    return m.group(2)


def test_watch_and_test_run_the_same_inline_tests(tmp_path: Path) -> None:
    """One rule for both: the named files' tests; --with-imports (or no PATH) adds imports'."""
    import json

    from typer.testing import CliRunner

    from mcp_defense.cli.main import app

    (tmp_path / "team.mcpd").write_text(TEAM)

    def test_count(*argv: str) -> int:
        r = CliRunner().invoke(
            app, ["policy", "test", *argv, "--set", f"workspace={tmp_path}", "--format", "json"]
        )
        assert r.exit_code == 0, r.output
        return sum(f["cases"] for f in json.loads(r.output)["files"])

    named = test_count(str(tmp_path))
    with_imports = test_count(str(tmp_path), "--with-imports")
    assert named == 1 and with_imports > 1
    assert _watch_count([str(tmp_path), "--set", f"workspace={tmp_path}"], tmp_path) == "1"
    assert _watch_count(
        [str(tmp_path), "--with-imports", "--set", f"workspace={tmp_path}"], tmp_path
    ) == str(with_imports)
