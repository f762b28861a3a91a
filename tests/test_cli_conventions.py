"""The command line a security engineer expects (issue: one convention, honest formats)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcp_defense import __version__
from mcp_defense.cli.main import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def test_version_prints_package_and_pack_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0, r.output
    m = re.fullmatch(r"mcp-defense (\S+) \(built-in policy pack ([0-9a-f]{12})\)\n", r.output)
    assert m is not None, r.output
    assert m.group(1) == __version__
    # The same version `policy compile` reports for the built-in pack.
    c = runner.invoke(app, ["policy", "compile", "--format", "json"])
    assert m.group(2) in c.output


def test_version_from_a_real_process() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mcp_defense", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"mcp-defense {__version__} ")


POLICY = """\
import "builtin:rules.mcpd"

rule ask_for_notes priority 90 for filesystem {
  when call.tool == "write_file" && call.paths.exists(p, p.endsWith("/NOTES.md"))
  require_approval "notes are reviewed"
}

test "the decision name works as an action and in expect" {
  archetype filesystem
  call write_file {"path": "${workspace}/NOTES.md", "content": "x"}
  expect require_approval by ask_for_notes
}

test "the DSL keyword still works" {
  archetype filesystem
  call write_file {"path": "${workspace}/docs/NOTES.md", "content": "x"}
  expect approve by ask_for_notes
}
"""


def test_require_approval_is_accepted_where_the_language_names_a_decision(
    tmp_path: Path,
) -> None:
    (tmp_path / "p.mcpd").write_text(POLICY)
    lint = runner.invoke(app, ["policy", "lint", str(tmp_path)])
    assert lint.exit_code == 0, lint.output
    r = runner.invoke(
        app,
        ["policy", "test", "--policy", str(tmp_path), "--set", "workspace=/w", "--format", "json"],
    )
    assert r.exit_code == 0, r.output
    mine = [f for f in json.loads(r.output)["files"] if f["path"].endswith("p.mcpd")]
    assert [(f["cases"], f["passed"]) for f in mine] == [(2, 2)]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("docker-build", ["docker build -t mcp-defense ."]),
        ("docker-demo", ["docker build -t mcp-defense .", "docker run --rm mcp-defense demo"]),
    ],
)
def test_make_targets_of_the_published_tool(target: str, expected: list[str]) -> None:
    out = subprocess.run(
        ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.splitlines() == expected


REGISTRY_INSTALL = re.compile(
    r"(pipx?|uv\s+tool|uv\s+pip)\s+install\s+(-\S+\s+)*[\"']?mcp-defense(?![\w./-]*\.whl)\b(?!\s*@)"
)


def test_docs_never_install_the_unrelated_registry_package() -> None:
    """`mcp-defense` on the package registry is an older, unrelated package: every install
    instruction we ship points at this repository or a built wheel."""
    files = [ROOT / "README.md", ROOT / "Dockerfile", ROOT / "Makefile"]
    for sub in ("docs", "examples"):
        files += [p for p in (ROOT / sub).rglob("*") if p.suffix in {".md", ".yml", ".yaml"}]
    bad = [
        f"{f.relative_to(ROOT)}:{n}: {line.strip()}"
        for f in files
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if REGISTRY_INSTALL.search(line)
    ]
    assert bad == []


def test_registry_install_pattern() -> None:
    assert REGISTRY_INSTALL.search('run: pip install "mcp-defense>=0.2"')
    assert REGISTRY_INSTALL.search("pipx install mcp-defense")
    assert REGISTRY_INSTALL.search("uv tool install mcp-defense")
    assert not REGISTRY_INSTALL.search('pip install "mcp-defense @ git+https://x/y@v1"')
    assert not REGISTRY_INSTALL.search("pipx install ./mcp-defense")


def test_compile_timings_list_every_stage_in_order() -> None:
    from mcp_defense.policy.compile import STAGES

    r = runner.invoke(app, ["policy", "compile", "--timings", "--format", "json"])
    assert r.exit_code == 0, r.output
    stages = json.loads(r.output)["timings_ms"]
    assert [s["stage"] for s in stages] == list(STAGES)
    assert all(s["ms"] >= 0 for s in stages)
    text = runner.invoke(app, ["policy", "compile", "--timings"])
    assert "compiler stages" in text.output and "total" in text.output


def test_compile_lint_and_watch_take_policy_like_eval(tmp_path: Path) -> None:
    (tmp_path / "p.mcpd").write_text(POLICY)
    for cmd in (["policy", "compile"], ["policy", "lint"]):
        positional = runner.invoke(app, [*cmd, str(tmp_path)])
        flag = runner.invoke(app, [*cmd, "--policy", str(tmp_path)])
        assert positional.exit_code == flag.exit_code == 0, flag.output
        assert positional.output == flag.output
    assert "--policy" in runner.invoke(app, ["policy", "watch", "--help"]).output


@pytest.mark.parametrize(
    "cmd",
    [
        ["policy", "compile"],
        ["policy", "explain", "-"],
        ["policy", "bench", "--n", "10", "--lines", "10"],
        ["record", "view", "x.jsonl"],
    ],
)
def test_github_format_only_where_it_exists(cmd: list[str]) -> None:
    r = runner.invoke(app, [*cmd, "--format", "github"])
    assert r.exit_code == 2
    assert "'github' is not one of" in r.output


def test_piped_output_is_full_width() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mcp_defense", "policy", "compile"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "COLUMNS": "80"},
    )
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout  # no rule name cut to fit 80 columns
    assert "archetype_outside_network" in out.stdout or max(map(len, out.stdout.splitlines())) > 80
