"""Size limits of policy text (policy/limits.py): a file past its limit is refused without being
read whole, a string literal past its limit where it starts, `${…}` expansion bounded per
string and in all; lint exits 1 and proxy start-up 2 with the diagnostic, never a traceback;
the memory to lint a policy with a large allowed literal stays within ~10× its size."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from mcp_defense.policy.limits import MAX_EXPANSION_CHARS, MAX_POLICY_BYTES, MAX_STRING_CHARS
from mcp_defense.policy.loader import load


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_defense.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _lint(p: Path) -> subprocess.CompletedProcess[str]:
    return _run("policy", "lint", str(p))


def _start(p: Path) -> subprocess.CompletedProcess[str]:
    return _run("stdio", "--archetype", "generic", "--policy", str(p), "--", "cat")


def _literal(tmp_path: Path, name: str, chars: int, fill: str = "a") -> Path:
    p = tmp_path / name
    with p.open("w") as fh:
        fh.write('archetype a {\n  description "')
        fh.write(fill * (chars // len(fill)))
        fh.write('"\n}\n')
    return p


def test_a_50_mb_literal_is_refused_by_the_file_limit(tmp_path: Path) -> None:
    """Issue 12: 50 MB in one string took 6.9 GB and 38 s to lint."""
    p = _literal(tmp_path, "huge.mcpd", 50 * 1024 * 1024)
    for r, code in ((_lint(p), 1), (_start(p), 2)):
        out = r.stdout + r.stderr
        assert r.returncode == code, out[-2000:]
        assert f"{p}:1:1: error: policy file of 52,428," in out
        assert "the limit is 4 MiB per file [too-large]" in out
        assert "Traceback" not in out and "aaaa" not in out


def test_a_file_one_byte_past_the_limit_is_refused_and_one_at_it_is_not(tmp_path: Path) -> None:
    at = tmp_path / "at.mcpd"
    line = "# " + "x" * 1021 + "\n"  # 1 KiB
    at.write_text(line * (MAX_POLICY_BYTES // len(line)))
    assert at.stat().st_size == MAX_POLICY_BYTES
    assert _lint(at).returncode == 0
    past = tmp_path / "past.mcpd"
    past.write_text(at.read_text() + "\n")
    r = _lint(past)
    assert r.returncode == 1
    assert f"{past}:1:1: error: policy file of 4,194,305 bytes: the limit is 4 MiB" in r.stdout


def test_an_imported_file_past_the_limit_is_refused(tmp_path: Path) -> None:
    _literal(tmp_path, "big.mcpd", MAX_POLICY_BYTES)
    main = tmp_path / "main.mcpd"
    main.write_text('import "big.mcpd"\n')
    result = load([main])
    assert result.table is None
    assert [d.code for d in result.errors] == ["too-large"]
    assert result.errors[0].span.file.endswith("big.mcpd")


def test_a_literal_past_the_limit_is_refused_where_it_starts(tmp_path: Path) -> None:
    p = _literal(tmp_path, "long.mcpd", MAX_STRING_CHARS + 1)
    for r, code in ((_lint(p), 1), (_start(p), 2)):
        out = r.stdout + r.stderr
        assert r.returncode == code, out[-2000:]
        assert (
            f"{p}:2:15: error: string of 1,048,577 characters: the limit is 1,048,576 "
            "characters per string [too-large]" in out
        )
        assert "Traceback" not in out and "aaaa" not in out
    assert _lint(_literal(tmp_path, "ok.mcpd", MAX_STRING_CHARS)).returncode == 0


@pytest.mark.parametrize(("name", "fill"), [("plain", "a"), ("escapes", "\\\\"), ("mixed", 'a\\"')])
def test_memory_to_lint_a_large_literal_stays_within_ten_times_its_size(
    tmp_path: Path, name: str, fill: str
) -> None:
    """Lexing a literal kept a backtracking frame per character (147× the source for 1 MiB);
    the lexer's string pattern is now possessive."""
    p = _literal(tmp_path, f"{name}.mcpd", MAX_STRING_CHARS - 8)
    load([_literal(tmp_path, "warm.mcpd", 10)])  # grammar and pack loaded once, outside
    tracemalloc.start()
    try:
        result = load([p])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.table is not None
    assert peak <= 10 * p.stat().st_size, f"{peak / p.stat().st_size:.1f}×"


def test_an_unterminated_long_string_is_a_syntax_error_in_bounded_memory(tmp_path: Path) -> None:
    p = tmp_path / "open.mcpd"
    p.write_text('let x = "' + "\\a" * (MAX_STRING_CHARS // 2) + "\n")
    tracemalloc.start()
    try:
        result = load([p])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [d.code for d in result.errors] == ["syntax"]
    assert peak <= 10 * p.stat().st_size


def test_expansion_cannot_build_a_string_past_the_literal_limit(tmp_path: Path) -> None:
    """`let` chains grow exponentially (1,000 characters, 1,000 times, 1,000 times …)."""
    p = tmp_path / "laughs.mcpd"
    p.write_text(
        f'let a = "{"a" * 1000}"\n'
        f'let b = "{"${a}" * 1000}"\n'
        f'let c = "{"${b}" * 1000}"\n'
        f'let d = "{"${c}" * 1000}"\n'
    )
    r = _lint(p)
    assert r.returncode == 1
    assert (
        f"{p}:3:9: error: the string expands to 1,000,000,000 characters: the limit is "
        "1,048,576 characters per string [too-large]" in r.stdout
    )


def test_expansion_adds_at_most_the_total_limit(tmp_path: Path) -> None:
    p = tmp_path / "many.mcpd"
    n = MAX_EXPANSION_CHARS // (MAX_STRING_CHARS - 10) + 1
    p.write_text(
        f'let a = "{"a" * (MAX_STRING_CHARS - 10)}"\n'
        + "".join(f'let b{i} = "${{a}}"\n' for i in range(n + 3))
    )
    result = load([p])
    assert result.table is None
    errors = [d for d in result.errors if d.code == "too-large"]
    assert len(errors) == 1  # reported once
    assert errors[0].span.line == n + 1  # b{n-1}: the n-th expansion of a
    assert "expansion adds more than 4 MiB of text to the policy" in errors[0].message
