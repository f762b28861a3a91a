"""The README's examples are real runs: every `$ command` in a shell block is executed in a
scratch directory and must print what the README shows under it. A fenced block preceded by
`<!-- readme-output: COMMAND -->` is the output of COMMAND. In expected text `…` stands for any
text, and policy version hashes (which depend on the directory) are compared by shape only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!-- readme-output: (.+) -->$")
VERSION = re.compile(r"\b[0-9a-f]{12}\b")


@dataclass
class Example:
    line: int  # where the command is written in the README
    command: str
    expected: list[str]


def _blocks(text: str) -> list[tuple[int, str, list[str], str | None]]:
    """(first line number, language, lines, directive) of each fenced block."""
    out: list[tuple[int, str, list[str], str | None]] = []
    lines = text.splitlines()
    i = 0
    directive: str | None = None
    while i < len(lines):
        d = DIRECTIVE.match(lines[i].strip())
        if d:
            directive = d.group(1)
            i += 1
            continue
        m = FENCE.match(lines[i].strip())
        if not m:
            if lines[i].strip():
                directive = None
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not FENCE.match(lines[i].strip()):
            body.append(lines[i])
            i += 1
        out.append((start + 1, m.group(1), body, directive))
        directive = None
        i += 1
    return out


def _examples(text: str) -> tuple[str, list[Example]]:
    setup = ""
    examples: list[Example] = []
    for start, lang, body, directive in _blocks(text):
        if directive is not None:
            examples.append(Example(start - 1, directive, [b.rstrip() for b in body]))
            continue
        if lang != "sh":
            continue
        if any("cat > my-policy/team.mcpd" in b for b in body):
            setup = "\n".join(body) + "\n"
            continue
        k = 0
        while k < len(body):
            if not body[k].startswith("$ "):
                k += 1
                continue
            first = k
            cmd = [body[k][2:]]
            while cmd[-1].endswith("\\") and k + 1 < len(body):
                k += 1
                cmd.append(body[k])
            k += 1
            expected = []
            while k < len(body) and not body[k].startswith("$ "):
                expected.append(body[k].rstrip())
                k += 1
            examples.append(Example(start + first, "\n".join(cmd), expected))
    return setup, examples


def _matches(expected: str, actual: str) -> bool:
    parts = [re.escape(p) for p in VERSION.sub("\0", expected).split("…")]
    pattern = "(?s:.*)".join(parts).replace("\\\0", "[0-9a-f]{12}").replace("\0", "[0-9a-f]{12}")
    return re.fullmatch(pattern, actual) is not None


SETUP, EXAMPLES = _examples(README.read_text())


def test_the_readme_has_examples_to_check() -> None:
    assert SETUP, "the policy template block is gone from the README"
    assert len(EXAMPLES) >= 4


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("readme")
    subprocess.run(["bash", "-e", "-c", SETUP], cwd=d, check=True)
    return d


@pytest.mark.parametrize("ex", EXAMPLES, ids=[f"README.md:{e.line}" for e in EXAMPLES])
def test_readme_example_prints_what_the_readme_shows(ex: Example, scratch: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = "/home/you"
    env["COLUMNS"] = "200"
    env.pop("FORCE_COLOR", None)
    out = subprocess.run(
        ["bash", "-c", ex.command],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    actual = [line.rstrip() for line in (out.stdout + out.stderr).splitlines()]
    if not ex.expected:
        assert out.returncode == 0, out.stderr
        return
    assert len(actual) == len(ex.expected), "\n".join(actual)
    for want, got in zip(ex.expected, actual, strict=True):
        assert _matches(want, got), f"README.md:{ex.line}\nwant: {want}\ngot:  {got}"
