"""Imports read only policies: a file that is not `.mcpd` is refused by name (its content is never
read, so never quoted in a diagnostic a CI annotation would publish); a directory import must
lie under the policy's directories (those of the files named on the command line, and the
built-in pack) and is searched for `.mcpd` files in a bounded walk that follows no directory
symlink. `builtin:` imports keep working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_defense.policy import loader
from mcp_defense.policy.loader import load

PASSWD_FIRST = Path("/etc/passwd").read_text().splitlines()[0]
RULE = 'rule r_{name} {{\n  when call.tool == "{name}"\n  deny "no"\n}}\n'


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_defense.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _main(tmp_path: Path, imports: str) -> Path:
    d = tmp_path / "policy"
    d.mkdir(exist_ok=True)
    p = d / "main.mcpd"
    p.write_text(imports + 'import "builtin:"\n' + RULE.format(name="main"))
    return p


@pytest.mark.parametrize("target", ["/etc/passwd", "../secret.txt", "link.mcpd"])
def test_a_file_that_is_not_mcpd_is_refused_by_name_and_never_quoted(
    tmp_path: Path, target: str
) -> None:
    (tmp_path / "secret.txt").write_text(PASSWD_FIRST + "\n")
    p = _main(tmp_path, f'import "{target}"\n')
    (p.parent / "link.mcpd").symlink_to("/etc/passwd")
    r = _run("policy", "lint", str(p))
    assert r.returncode == 1, r.stdout[-2000:]
    assert f"{p}:1:8: error: import '{target}': imports only .mcpd files [not-policy]" in r.stdout
    assert PASSWD_FIRST not in r.stdout and "root:" not in r.stdout
    r = _run("policy", "lint", "--format", "github", str(p))  # what a CI annotation shows
    assert r.returncode == 1
    assert "line=1,col=8,title=mcpd not-policy::import" in r.stdout
    assert PASSWD_FIRST not in r.stdout and "root:" not in r.stdout
    r = _run("stdio", "--archetype", "generic", "--policy", str(p), "--", "cat")
    assert r.returncode == 2
    assert "imports only .mcpd files" in r.stderr and PASSWD_FIRST not in r.stderr


def test_the_filesystem_root_is_refused_without_a_walk(tmp_path: Path) -> None:
    p = _main(tmp_path, 'import "/"\n')
    result = load([p])
    assert result.table is None
    assert [(d.code, d.span.line) for d in result.errors] == [("import-outside", 1)]
    assert "a directory outside the policy's directories" in result.errors[0].message
    assert str(p.resolve()) in map(str, result.files)
    assert not any(str(f).startswith(("/etc", "/usr", "/proc")) for f in result.files)


@pytest.mark.parametrize("target", ["../outside", "builtin:..", "link"])
def test_a_directory_outside_the_roots_is_refused(tmp_path: Path, target: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "stray.mcpd").write_text(RULE.format(name="stray"))
    p = _main(tmp_path, f'import "{target}"\n')
    (p.parent / "link").symlink_to(outside)
    result = load([p])
    assert [d.code for d in result.errors] == ["import-outside"]
    assert not any(f.name == "stray.mcpd" for f in result.files)


def test_a_directory_under_the_roots_imports_only_its_mcpd_files(tmp_path: Path) -> None:
    p = _main(tmp_path, 'import "team"\n')
    team = p.parent / "team"
    (team / "sub").mkdir(parents=True)
    (team / "a.mcpd").write_text(RULE.format(name="a"))
    (team / "sub" / "b.mcpd").write_text(RULE.format(name="b"))
    (team / "notes.txt").write_text(PASSWD_FIRST + "\n")  # not a policy: never read
    (team / ".git").mkdir()
    (team / ".git" / "hidden.mcpd").write_text("this does not parse\n")
    (team / ".#a.mcpd").symlink_to("nowhere")  # an emacs lock
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "stray.mcpd").write_text(RULE.format(name="stray"))
    (team / "linked").symlink_to(outside)  # a directory symlink is not followed
    result = load([p])
    assert result.errors == [], result.errors
    assert result.table is not None
    names = {f.name for f in result.files}
    assert {"main.mcpd", "a.mcpd", "b.mcpd"} <= names
    assert not names & {"notes.txt", "hidden.mcpd", "stray.mcpd", ".#a.mcpd"}
    rules = set(result.table.rule_fingerprints)
    assert {"r_main", "r_a", "r_b"} <= rules and "r_stray" not in rules


def test_a_directory_import_may_name_the_policy_directory_itself(tmp_path: Path) -> None:
    p = _main(tmp_path, 'import "."\n')
    (p.parent / "extra.mcpd").write_text(RULE.format(name="extra"))
    result = load([p])
    assert result.errors == []
    assert result.table is not None
    assert "r_extra" in set(result.table.rule_fingerprints)


def test_a_directory_past_the_entry_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "MAX_DIRECTORY_ENTRIES", 50)
    p = _main(tmp_path, 'import "big"\n')
    big = p.parent / "big"
    big.mkdir()
    for i in range(60):
        (big / f"f{i}.txt").write_text("")
    result = load([p])
    assert [d.code for d in result.errors] == ["too-large"]
    assert "more than 50 entries to search for .mcpd files" in result.errors[0].message


def test_lint_of_the_filesystem_root_stops_at_the_entry_limit() -> None:
    r = _run("policy", "lint", "/")
    assert r.returncode == 1, r.stdout[-2000:]
    assert "/: more than 10,000 entries to search for .mcpd files" in r.stdout


@pytest.mark.parametrize("target", ["builtin:", "builtin:rules.mcpd"])
def test_builtin_imports_keep_working(tmp_path: Path, target: str) -> None:
    p = tmp_path / "main.mcpd"
    p.write_text(f'import "{target}"\n')
    result = load([p])
    assert result.errors == []
    assert result.table is not None and len(result.table.rule_fingerprints) > 10


def test_builtin_cannot_reach_outside_the_pack(tmp_path: Path) -> None:
    depth = len(Path(loader.builtin_policy_dir()).resolve().parts)
    p = _main(tmp_path, f'import "builtin:{"../" * depth}etc/passwd"\n')
    result = load([p])
    assert [d.code for d in result.errors] == ["not-policy"]
    assert os.path.exists("/etc/passwd")
