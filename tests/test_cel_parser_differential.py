"""The hand-written CEL parser (`cel/syntax.py`) against the pipeline it replaced: lark's LALR
parser over cel-python's `cel.lark`, then the old tree converter (tests/support/
cel_lark_oracle.py). Both must give the same `_Node` tree, field for field, or the same
`CelError` (message, line, column): for every `when` of the shipped and example policies,
every string in the CEL tests and docs, random expressions of the whole grammar, and random
mutations and truncations of them (the error paths)."""

from __future__ import annotations

import ast as pyast
import random
import re
from pathlib import Path
from typing import Any

import pytest
from support import cel_lark_oracle as oracle

from mcp_defense.policy import parser as policy_parser
from mcp_defense.policy.cel import syntax
from mcp_defense.policy.cel.syntax import CelError, _Node
from mcp_defense.policy.diagnostics import PolicyError

ROOT = Path(__file__).resolve().parents[1]
_FIELDS = ("kind", "a", "b", "line", "col", "start", "end", "at")


def _dump(n: _Node) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    stack = [(n, 0)]
    while stack:
        x, depth = stack.pop()
        out.append((depth, *(getattr(x, f) for f in _FIELDS), len(x.kids)))
        stack.extend((k, depth + 1) for k in reversed(x.kids))
    return out


def _old(src: str) -> tuple[Any, ...]:
    try:
        return ("ok", _dump(oracle.parse_to_node(src)))
    except CelError as e:
        return ("error", e.message, e.line, e.column)


def _new(src: str) -> tuple[Any, ...]:
    try:
        return ("ok", _dump(syntax.parse(src).root))
    except CelError as e:
        return ("error", e.message, e.line, e.column)


def _same(sources: list[str]) -> None:
    diffs = []
    for src in sources:
        old, new = _old(src), _new(src)
        if old != new:
            diffs.append((src, old[:4], new[:4]))
    assert not diffs, f"{len(diffs)} of {len(sources)} differ, e.g. {diffs[:3]}"


def test_terminals_are_lark_s() -> None:
    lexer = oracle._parser().parser.lexer.root_lexer  # type: ignore[attr-defined]
    lark_terms = [(t.name, t.pattern.to_regexp()) for t in lexer.terminals]
    assert lark_terms == list(syntax.TERMINALS.items())


# ---------------------------------------------------------------------------------------------
# Harvested: policies, tests, docs


def _policy_whens() -> list[str]:
    out = []
    paths = [*ROOT.glob("policies/*.mcpd"), *ROOT.glob("examples/**/*.mcpd")]
    for path in sorted([*paths, *ROOT.glob("tests/**/*.mcpd")]):
        try:
            f = policy_parser.parse(path.read_text(), str(path))
        except PolicyError:
            continue
        out += [r.when for r in f.rules]
    return out


def test_every_shipped_when() -> None:
    whens = _policy_whens()
    assert len(whens) >= 24
    _same(whens)


def _strings(path: Path) -> list[str]:
    tree = pyast.parse(path.read_text())
    found = [
        n.value
        for n in pyast.walk(tree)
        if isinstance(n, pyast.Constant) and isinstance(n.value, str) and len(n.value) < 2000
    ]
    return found


_HARVEST = [
    *sorted(ROOT.glob("tests/test_cel*.py")),
    ROOT / "tests/test_lint.py",
    ROOT / "tests/test_parser.py",
    ROOT / "tests/test_policy_cli.py",
]


def _docs() -> list[str]:
    out = []
    for path in sorted(ROOT.glob("docs/*.md")) + [ROOT / "README.md"]:
        for line in path.read_text().splitlines():
            m = re.search(r"\bwhen\s+(.+)$", line)
            if m:
                out.append(m.group(1))
            out += re.findall(r"`([^`\n]+)`", line)
    return out


def test_every_string_of_the_tests_and_docs() -> None:
    sources = sorted({s for p in _HARVEST for s in _strings(p)} | set(_docs()))
    assert len(sources) > 500
    _same(sources)


_EDGES = [
    "", " ", "// only a comment", "a //", "a.", ".", "a.b(", "a.b(1", "a.b(1,", "f(", "f(,)", "f(a b)",
    "{'a' 1}", "{'a': }", "{'a': 1,}", "{,}", "T{a 1}", "T{a: 1", "T{1: 2}", "T{a: 1,}", "T{}.x",
    "T{a: 1, b: 2}", "a{b: c{d: 1}}", "é", "a é", "a\u00a0", "a &&\u00a0", "a\x0bb", "a\x00",
    "a ? b", "a ? b :", "a ?", "? a", ": a", "a ? b : c ? d", "(a ? b : c) ? d : e", "a ? (b ? c : d) : e",
    "a ?? b", "a ||| b", "a & b", "a | b", "a = b", "a === b", "a !== b", "a =! b", "a <> b",
    "!", "-", "!-!-a", "- -1", "--1", "-1.5.x", "1.5.x", "1..2", "1.e", "1e+", "0x", "0xg", "0X1",
    "1U", "-1u", "0x1u", '"unterminated', "'\\'", "'a\\'", "'''a''", "r'''\\'''", 'R"x"',
    "B'x'", "bR'x'", "rb'x'", "'\\x4'", "'\\u12'", "'\\777'", "'\\400'", "'''\nline\r\n'''",
    "a in [1, 2] in [true]", "inx in in", "a.in(in)", "in.in", "null.null", "nullx", "true_",
    "a[b][c](d)", "a[b].c(d)", "a(b)(c)", "(a)(b)", "a.b.c(d).e[f]", "x.all(v, v) && y.exists(w, w)",
    "x.map(v, v, v)", "x.filter()", "has()", "has(a, b)", "has(a[0])", "has((a.b))", "x.all((v), v)",
    "{'a': 1u, 'a': 2}", "{'a': 1, 'a': 2u}", "{b'k': 1}", "{'\\q': 1}", "[1u, b'x']",
    "1u.all(x)", "1u.all(x, y)", "x.all(1u, y)", "T{a: 1u}", "1u{a: 1}", ".f(1u)", "f(1u).min()",
    "a\n&&\n  b ||\n c", "a //x\n.b", "a\r\n.b(\n)", "a\n  &&", "\n\n)",
]  # fmt: skip


def test_edge_cases() -> None:
    _same(_EDGES)


# ---------------------------------------------------------------------------------------------
# Generated

_NAMES = ["a", "b", "call", "x", "in", "null", "true", "if", "has", "_z9", "inx", "e"]
_FIELDS_ = ["tool", "args", "in", "null", "true", "size", "x"]
_LITS = [
    "1", "-1", "0x1F", "-0x10", "9223372036854775807", "9223372036854775808", "1u", "0x2U",
    "1.5", "1.", ".5", "1e3", "-2.5E-3", "1e5", '"s"', "'s'", 'r"\\d"', '"\\x41\\n"',
    '"""a\nb"""', "'''x'''", 'b"x"', "true", "false", "null", '"\\u00e9"', '"\\777"',
    '"\\q"', "'\\U0001F600'", '"\\U00110000"',
]  # fmt: skip
_BIN = ["||", "&&", "==", "!=", "<", "<=", ">", ">=", "in", "+", "-", "*", "/", "%"]
_MACROS = ["exists", "all", "map", "filter", "exists_one", "size", "startsWith", "reduce", "min"]


def _gen(r: random.Random, depth: int) -> str:
    if depth <= 0 or r.random() < 0.25:
        return r.choice(_LITS + _NAMES)
    k = r.randrange(16)
    sub = lambda: _gen(r, depth - 1)  # noqa: E731
    if k <= 3:
        return f"{sub()} {r.choice(_BIN)} {sub()}"
    if k == 4:
        return f"{r.choice(['!', '-', '!!', '--', '- '])}{sub()}"
    if k == 5:
        return f"({sub()})"
    if k == 6:
        return f"{sub()} ? {sub()} : {sub()}"
    if k == 7:
        return f"{sub()}.{r.choice(_FIELDS_)}"
    if k == 8:
        args = ", ".join(sub() for _ in range(r.randrange(4)))
        return f"{sub()}.{r.choice(_MACROS)}({args})"
    if k == 9:
        var = r.choice(["v", "v", "(v)", "1", "v.x"])
        return f"{sub()}.{r.choice(_MACROS[:5])}({var}, {sub()})"
    if k == 10:
        return f"{sub()}[{sub()}]"
    if k == 11:
        return "[" + ", ".join(sub() for _ in range(r.randrange(4))) + "]"
    if k == 12:
        keys = ['"k"', '"k"', "'j'", "1", "k", '"\\q"']
        items = (f"{r.choice(keys)}: {sub()}" for _ in range(r.randrange(4)))
        return "{" + ", ".join(items) + "}"
    if k == 13:
        name = r.choice(["has", "size", "f", "int", "matches"])
        return f"{name}(" + ", ".join(sub() for _ in range(r.randrange(3))) + ")"
    if k == 14:
        return r.choice([f".{r.choice(_NAMES)}", f".f({sub()})", f"{sub()}{{f: {sub()}}}", "T{}"])
    ops = r.choice(["||", "&&"])
    return f" {ops} ".join(sub() for _ in range(r.randrange(2, 40)))


def _spacing(r: random.Random, s: str) -> str:
    """Line breaks, comments and odd spacing between tokens (never inside a string)."""
    if r.random() < 0.5:
        return s
    out = []
    for part in re.split(r"( )", s):
        if part == " " and r.random() < 0.3:
            part = r.choice(["\n", "  ", " // note\n", "\t", "\r\n "])
        out.append(part)
    return "".join(out)


def _mutate(r: random.Random, s: str) -> str:
    k = r.randrange(5)
    i = r.randrange(len(s) + 1)
    if k == 0:
        return s[:i]
    if k == 1:
        return s[:i] + s[i + 1 :]
    if k == 2:
        return s[:i] + r.choice("()[]{},:?.!-+*/%<>=&|\"'\\@#$ x1u") + s[i:]
    if k == 3:
        j = r.randrange(len(s) + 1)
        return s[: min(i, j)] + s[max(i, j) :]
    return (
        s[:i] + r.choice(["in", "&&", "||", " ? ", " : ", "//", "\n", ".", "r", "b", "e"]) + s[i:]
    )


@pytest.mark.parametrize("seed", range(4))
def test_random_expressions(seed: int) -> None:
    r = random.Random(seed)
    sources = [_spacing(r, _gen(r, r.randrange(1, 6))) for _ in range(1500)]
    _same(sources)


@pytest.mark.parametrize("seed", range(4))
def test_random_mutations(seed: int) -> None:
    r = random.Random(1000 + seed)
    sources = []
    for _ in range(1500):
        s = _spacing(r, _gen(r, r.randrange(1, 5)))
        for _ in range(r.randrange(1, 3)):
            s = _mutate(r, s)
        sources.append(s)
    _same(sources)


def _deep(r: random.Random, levels: int) -> str:
    s = r.choice(["a", "1", "x.y"])
    for _ in range(levels):
        p = s if r.random() < 0.1 else f"({s})"  # mostly valid: parenthesized where needed
        s = r.choice(
            [
                f"({s})",
                f"!{p}",
                f"-{p}",
                f"{p}.f",
                f"f({s})",
                f"[{s}]",
                f"{{'k': {s}}}",
                f"{p}[0]",
                f"a + {p}",
                f"{p} * 2",
                f"a || {p}",
                f"{p} && b",
                f"c ? {p} : d",
                f"c ? d : {s}",
                f"{p}.all(v, v)",
                f"{p}{{f: 1}}" if r.random() < 0.1 else f"{p}.g(1, {s})",
            ]
        )
    return s


def test_nesting_limits() -> None:
    """Around `MAX_NESTING`: which node is reported, and that a syntax error anywhere still
    comes first."""
    r = random.Random(7)
    n = syntax.MAX_NESTING
    sources = [_deep(r, r.randrange(n // 3, n)) for _ in range(400)]
    sources += [s + " &&" for s in sources[:50]]
    sources += [s[: len(s) // 2] for s in sources[:50]]
    sources += [
        "(" * 3000 + "a" + ")" * 3000,
        "(" * 3000 + "a" + ")" * 2999,
        "!" * 5000 + "a",
        "a" + ".b" * 5000,
        " || ".join(["a"] * 5000),
        " || ".join(["(a && b)"] * 3000),
        "a ? b : " * 200 + "c",
        "[" * 100 + "]" * 100,
        "x" * (syntax.MAX_SOURCE_LENGTH + 1),
    ]
    _same(sources)


def test_clauses_are_the_old_ones() -> None:
    r = random.Random(11)
    sources = _policy_whens() + [_gen(r, 3) for _ in range(1500)]
    sources += ["(a || b || c)", "((a || b) || c)", "a || b && c", "(a) && (b)", "(a && b)"]
    for src in sources:
        try:
            old_tree = oracle.parse(src)
            oracle._convert(old_tree)
        except CelError:
            continue
        tree = syntax.parse(src)
        for old, new in (
            (oracle.clauses(old_tree), syntax.clauses(tree)),
            (oracle.conjuncts(old_tree), syntax.conjuncts(tree)),
        ):
            assert [t for t, _ in old] == [t for t, _ in new], src
            assert [_dump(oracle._convert(t)) for _, t in old] == [_dump(t.root) for _, t in new], (
                src
            )
