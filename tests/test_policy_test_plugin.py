"""The pytest plugin: `.mcpd` inline tests collected by pytest, each under its file and line,
and nothing collected unless the plugin is asked for."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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

FRAGMENT = """\
archetype scratch {
  paths "/tmp/**"
  network none
  spawn none
}
"""


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    plugin_installed = any(ep.name == "mcpd" for ep in entry_points(group="pytest11"))
    load = [] if plugin_installed else ["-p", "mcp_defense.pytest_plugin"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", *load, "-p", "no:cacheprovider", "-q", "-rA", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _repo(tmp_path: Path) -> Path:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team.mcpd").write_text(TEAM)
    (tmp_path / "policies" / "scratch.mcpd").write_text(FRAGMENT)  # no tests: not collected
    (tmp_path / "test_other.py").write_text("def test_other():\n    assert True\n")
    return tmp_path


def test_inert_without_the_flag(tmp_path: Path) -> None:
    r = _pytest(_repo(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
    assert "team.mcpd" not in r.stdout


def test_collects_inline_tests_under_file_and_line(tmp_path: Path) -> None:
    r = _pytest(_repo(tmp_path), "--mcpd", "--mcpd-set", "home=/home/alice", "policies")
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    assert "1 failed, 1 passed" in out
    assert "PASSED policies/team.mcpd::workspace read is allowed" in out
    assert "FAILED policies/team.mcpd::ssh key denied by the wrong rule" in out
    # the failure names the test's file:line and shows the explain trace, no Python traceback
    assert re.search(
        r"policies/team\.mcpd:9:\d+: test 'ssh key denied by the wrong rule': "
        r"expected deny by archetype_path, got deny by crown_jewel",
        out,
    ), out
    assert "team.mcpd:9: mcpd test ssh key denied by the wrong rule" in out  # failure header
    assert "rules (in decision order)" in out
    assert "Traceback" not in out


def test_ini_option_enables_and_scopes_collection(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "pytest.ini").write_text(
        "[pytest]\nmcpd_paths = policies\nmcpd_set =\n    home=/home/alice\n"
    )
    r = _pytest(repo, "-k", "workspace")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED policies/team.mcpd::workspace read is allowed" in r.stdout


def test_policy_that_does_not_compile_is_a_collection_error(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "policies" / "broken.mcpd").write_text(
        'test "x" {\n  archetype nosuch\n  call read_file {"path": "/x"}\n  expect allow\n}\n'
    )
    r = _pytest(repo, "--mcpd", "policies")
    assert r.returncode != 0
    assert "broken.mcpd" in r.stdout and "unknown archetype" in r.stdout
