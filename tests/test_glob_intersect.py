"""Glob patterns against jewel globs (issue 11, class 4): a pattern the server expands is as
sensitive as the most sensitive jewel it *can* match, whether or not that file exists on the
proxy's host. Several spellings each; Claude Code's `Glob` tool patterns are paths too."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_defense.policy.glob_intersect import JewelPatterns, is_pattern, segments_intersect

CROWN_PATTERNS = [
    "cat ~/.ss?/id*",
    "cat ~/.ssh/{id_rsa,config}",
    "ls /home/*/.aws/credentials",
    "head ~/.ssh/id_*",
    "cat ~/.ssh/*",
    "cat ~/.[s]sh/id_rsa",
    "cat ~/.[!a]sh/id_ed25519",
    "cat ~/.*/id_rsa",
    "cat /home/*/.ssh/id_[re]*",
    "cat ~/.aws/cred*",
    "cat ~/.aws/c?edentials",
    "cat /*/*/.ssh/id_rsa",
    "cat /r??t/.ssh/id_rsa",
    "cat /etc/ssh/ssh_host_*",
    "cat ~/.config/gcloud/*.db",
    "cat ~/.config/google-chrome/*/Login\\ Data",
    "tar czf /tmp/x.tgz ~/.ssh/id_*",
    "cp ~/.ssh/id_* /workspace/",
    "shopt -s dotglob; cat ~/*/id_rsa",
    "GLOBIGNORE=.; cat ~/*/id_rsa",
    "zsh -c 'setopt globdots; cat ~/*/id_rsa'",
    "python3 -c \"import glob; print(open(glob.glob('/home/*/.ssh/id_*')[0]).read())\"",
]

GLOB_TOOL_CROWN: list[dict[str, Any]] = [
    {"pattern": "~/.ssh/*"},
    {"pattern": "**/.aws/credentials", "path": "/"},
    {"pattern": ".ssh/id_*", "path": "/home/alice"},
    {"pattern": "*/.aws/credentials", "path": "/home"},
    {"pattern": "/home/*/.ssh/id_*"},
    {"pattern": "**/id_rsa", "path": "~"},
    {"pattern": "~/.ssh/{id_rsa,id_ed25519}"},
]

BENIGN_SHELL = [
    "ls src/*.py tests/test_*.py",
    "cat /workspace/app/[id]/page.tsx",
    "wc -l /workspace/*.md",
    "rm -rf /workspace/build/*",
    "cat ~/.ssh/*.pub",
    "ls /etc/*.conf",
]

BENIGN_GLOB_TOOL: list[dict[str, Any]] = [
    {"pattern": "**/*.py", "path": "/workspace"},
    {"pattern": "src/**/*.ts"},
    {"pattern": "**/*"},
    {"pattern": "**/*.{ts,tsx}", "path": "/workspace/web"},
    {"pattern": "tests/test_*.py"},
]


@pytest.mark.parametrize("command", CROWN_PATTERNS)
def test_shell_patterns_that_can_match_a_crown_jewel_are_crown(decide, command: str) -> None:
    d = decide("shell", "run_command", {"command": command})
    assert (d.action.value, d.rule) == ("deny", "crown_jewel"), f"{d.rule}: {d.reason}"


@pytest.mark.parametrize("args", GLOB_TOOL_CROWN, ids=str)
@pytest.mark.parametrize("arch", ["shell", "filesystem"])
def test_glob_tool_patterns_are_paths(decide, arch: str, args: dict[str, Any]) -> None:
    d = decide(arch, "Glob", args)
    assert (d.action.value, d.rule) == ("deny", "crown_jewel"), f"{d.rule}: {d.reason}"


@pytest.mark.parametrize(
    "args",
    [
        {"pattern": "BEGIN OPENSSH PRIVATE KEY", "path": "/home/alice", "glob": "id_*"},
        {"pattern": "aws_secret", "path": "/home", "glob": "*/.aws/credentials"},
    ],
    ids=str,
)
def test_grep_tool_globs_are_paths(decide, args: dict[str, Any]) -> None:
    d = decide("shell", "Grep", args)
    assert (d.action.value, d.rule) == ("deny", "crown_jewel"), f"{d.rule}: {d.reason}"


def test_grep_tool_path_is_a_recursive_root(decide) -> None:
    d = decide("shell", "Grep", {"pattern": "password", "path": "/home/alice", "glob": "*.txt"})
    assert d.action.value in ("deny", "require_approval"), f"{d.rule}: {d.reason}"


@pytest.mark.parametrize("command", BENIGN_SHELL)
def test_patterns_that_cannot_match_a_crown_jewel_are_not_crown(decide, command: str) -> None:
    d = decide("shell", "run_command", {"command": command})
    assert d.rule != "crown_jewel", d.reason


@pytest.mark.parametrize("args", BENIGN_GLOB_TOOL, ids=str)
def test_workspace_glob_tool_calls_are_allowed(decide, args: dict[str, Any]) -> None:
    d = decide("filesystem", "Glob", args)
    assert d.action.value == "allow", f"{d.rule}: {d.reason}"


def test_grep_pattern_is_a_regex_not_a_path(decide) -> None:
    d = decide("filesystem", "Grep", {"pattern": "~/.ssh/id_rsa", "path": "/workspace"})
    assert d.action.value == "allow", f"{d.rule}: {d.reason}"


# -- the intersection itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    "a,b,expected",
    [
        ("id*", "id_*[!b]", True),
        (".ss?", ".ssh", True),
        ("*", ".ssh", False),  # a wildcard does not match a leading dot
        ("?ssh", ".ssh", False),
        ("[.]ssh", ".ssh", False),
        (".*", ".ssh", True),
        ("*.pub", "id_*[!b]", False),  # ends in b
        ("*.pub", "*.pem", False),
        ("id_[re]*", "id_*[!u]b", True),
        ("ID_RSA", "id_rsa", True),  # jewel matching ignores case
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("[!a]", "[a]", False),
    ],
)
def test_segments(a: str, b: str, expected: bool) -> None:
    assert segments_intersect(a, b) is expected


@pytest.mark.parametrize(
    "pattern,expected",
    [
        ("/home/bob/.ss?/id*", True),
        ("/Users/*/.ssh/id_rsa", True),
        ("/**/.ssh/id_rsa", True),
        ("/home/bob/**/id_rsa", False),  # globstar does not enter `.ssh`
        ("/home/bob/.ssh/*.pub", False),
        ("/workspace/**/*.py", False),
        ("/etc/ssh/ssh_host_*_key", True),
        ("/etc/ssh/*.pub", False),
    ],
)
def test_patterns_against_a_jewel_list(pattern: str, expected: bool) -> None:
    jewels = JewelPatterns(["~/.ssh/id_*[!b]", "~/.ssh/*_rsa", "/etc/ssh/ssh_host_*_key"])
    assert jewels.reaches(pattern) is expected


def test_the_recursive_root_marker_is_not_a_pattern() -> None:
    assert not is_pattern("/home/bob/**")
    assert is_pattern("/home/*/**") and is_pattern("/home/bob/.ss?")
    assert not is_pattern("/workspace/src/app.py")
    assert is_pattern("/home/bob/.ssh/{id_rsa,config}")


@pytest.mark.parametrize(
    "pattern",
    [
        "/workspace/" + "x*/" * 30 + "q",
        "/workspace/" + "{a,b}" * 4 + "/q",
        "/workspace/" + "?" * 2000,
    ],
)
def test_patterns_beyond_the_bounds_reach_every_jewel(pattern: str) -> None:
    # fail closed: deciding them would cost more than a decision may
    assert JewelPatterns(["~/.ssh/id_*"]).reaches(pattern)


def test_a_call_carries_a_bounded_number_of_patterns(decide) -> None:
    command = " ".join(f"/workspace/d{i}/*.txt" for i in range(70))
    d = decide("shell", "run_command", {"command": "ls " + command})
    assert (d.action.value, d.rule) == ("deny", "malformed_arguments"), d.reason
