"""Benign work must pass: a corpus of real calls, generated at test time from real trees.

Every tracked file of this repository and every file of the installed `mcp` package is read,
written (with its own content) and edited under the `filesystem` archetype, with the tree as the
workspace; everyday commands of a development session over the same files run under `shell`
(copies from the system into the tree among them); Claude Code's Glob and Grep search the same
trees; GitHub tool calls name the same files as repository paths under `github`. A decision other
than `allow` is a false positive unless the pack names the file as a jewel (then a human is asked).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp
import pytest

import mcp_defense
from mcp_defense.policy.facts import ToolCall
from mcp_defense.policy.table import DecisionTable

REPO = Path(__file__).resolve().parent.parent
MCP_TREE = Path(mcp.__file__).resolve().parent
MAX_CONTENT = 64 * 1024

Call = tuple[str, str, dict[str, Any]]


def _repo_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    return [REPO / p for p in out.split("\0") if p and (REPO / p).is_file()]


def _package_files() -> list[Path]:
    return sorted(p for p in MCP_TREE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _text(path: Path) -> str | None:
    try:
        data = path.read_bytes()[:MAX_CONTENT]
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _filesystem_calls(files: list[Path]) -> Iterator[Call]:
    for path in files:
        yield ("filesystem", "read_file", {"path": str(path)})
        text = _text(path)
        if text is None:
            continue
        yield ("filesystem", "write_file", {"path": str(path), "content": text})
        first = next((line for line in text.splitlines() if line.strip()), "")
        if first:
            edit = {"oldText": first, "newText": first + " "}
            yield ("filesystem", "edit_file", {"path": str(path), "edits": [edit]})


def _shell_calls(root: Path, files: list[Path]) -> Iterator[Call]:
    everyday = [
        "git status",
        "git status --short",
        "git diff",
        "git diff --stat",
        "git log --oneline -20",
        "git branch -a",
        "git stash list",
        "git add -A && git commit -m 'wip: tidy'",
        "ls -la",
        "pwd",
        "make lint",
        "python -m pytest -q -x",
        "ruff check .",
        "ruff format --check .",
        "mypy",
        "find . -name '*.py' -not -path './.venv/*' | wc -l",
        "grep -rn TODO --include='*.py' .",
        "du -sh .",
        "date",
        "uname -a",
        "python3 --version",
        "which python3",
        "echo $PATH",
        "mkdir -p /tmp/scratch && cd /tmp/scratch && ls",
        "tar czf /tmp/src.tgz -C . pyproject.toml",
        # copies from the system into the tree: the sources are only read
        "cat /etc/os-release > os-release.txt",
        "uname -a > /tmp/uname.txt && cp /tmp/uname.txt .",
        "cp /etc/hostname ./hostname.txt",
        "install -m 644 /etc/os-release build-os-release",
        "rsync -a /usr/share/common-licenses/ licenses/",
        "tar -xzf /tmp/src.tgz -C /tmp/unpacked",
        "python3 -m pip freeze > requirements-lock.txt",
        "git show HEAD:pyproject.toml | tee /tmp/pyproject.old",
    ]
    for command in everyday:
        yield ("shell", "run_command", {"command": command, "cwd": str(root)})
    for path in files:
        rel = path.relative_to(root).as_posix()
        quoted = "'" + rel.replace("'", "'\\''") + "'"
        for command in (
            f"cat {quoted}",
            f"wc -l {quoted}",
            f"head -n 20 {quoted}",
            f"git log --oneline -3 -- {quoted}",
            f"grep -n 'def ' {quoted} | head",
            f"cp {quoted} /tmp/backup.txt",
        ):
            yield ("shell", "run_command", {"command": command, "cwd": str(root)})


def _search_calls(root: Path, files: list[Path]) -> Iterator[Call]:
    """Claude Code's Glob and Grep over the tree: one of each per directory and file type."""
    dirs = sorted({p.parent.relative_to(root).as_posix() for p in files})
    suffixes = sorted({p.suffix for p in files if p.suffix})
    for rel in dirs:
        yield ("filesystem", "Glob", {"pattern": f"{rel}/*", "path": str(root)})
        yield ("filesystem", "Grep", {"pattern": "TODO", "path": str(root / rel)})
    for suffix in suffixes:
        yield ("filesystem", "Glob", {"pattern": f"**/*{suffix}", "path": str(root)})
        yield ("filesystem", "Grep", {"pattern": "def ", "path": str(root), "glob": f"*{suffix}"})


def _github_calls(root: Path, files: list[Path]) -> Iterator[Call]:
    for path in files:
        rel = path.relative_to(root).as_posix()
        repo = {"owner": "example-org", "repo": "mcp-defense"}
        yield ("github", "get_file_contents", {**repo, "path": rel, "branch": "main"})
        text = _text(path)
        if text is not None:
            yield (
                "github",
                "create_or_update_file",
                {**repo, "path": rel, "content": text, "message": f"Update {rel}", "branch": "x"},
            )


def _expected(table: DecisionTable, arch: str, tool: str, args: dict[str, Any]) -> set[str]:
    """allow; or ask when the pack names the local file a jewel (a write to a config jewel)."""
    path = args.get("path")
    if arch == "filesystem" and isinstance(path, str) and tool not in ("Glob", "Grep"):
        level = table.jewel(path)
        writes = tool != "read_file"
        if level == "auth" or (level == "config" and writes):
            return {"require_approval"}
        if level == "crown":
            return {"deny"}
    return {"allow"}


def _decide_all(root: Path, calls: list[Call]) -> list[str]:
    table = mcp_defense.compile(None, {"workspace": str(root), "home": "/home/alice"})
    misses = []
    for arch, tool, args in calls:
        d = table.decide(ToolCall(archetype=arch, tool=tool, arguments=args))
        if d.action.value not in _expected(table, arch, tool, args):
            misses.append(
                f"{arch} {tool} {str(args)[:100]} -> {d.action.value} {d.rule}: {d.reason}"
            )
    return misses


@pytest.fixture(scope="module")
def corpus() -> dict[Path, list[Call]]:
    repo_files = _repo_files()
    package_files = _package_files()
    return {
        REPO: [
            *_filesystem_calls(repo_files),
            *_shell_calls(REPO, repo_files),
            *_search_calls(REPO, repo_files),
            *_github_calls(REPO, repo_files),
        ],
        MCP_TREE: [
            *_filesystem_calls(package_files),
            *_shell_calls(MCP_TREE, package_files),
            *_search_calls(MCP_TREE, package_files),
        ],
    }


def test_corpus_is_large_and_real(corpus: dict[Path, list[Call]]) -> None:
    calls = [c for tree in corpus.values() for c in tree]
    assert len(calls) >= 500
    assert {arch for arch, _, _ in calls} == {"filesystem", "shell", "github"}


def test_no_false_positives_on_benign_work(corpus: dict[Path, list[Call]]) -> None:
    misses = [m for root, calls in corpus.items() for m in _decide_all(root, calls)]
    total = sum(len(calls) for calls in corpus.values())
    assert misses == [], f"{len(misses)} false positives in {total} benign calls:\n" + "\n".join(
        misses[:40]
    )
