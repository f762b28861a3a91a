"""Limits of a `when`: nesting depth and source length give a diagnostic at their position,
never a RecursionError, in the library, in `policy lint` (exit 1) and at proxy start-up
(exit 2); long chains of one `&&`/`||` are balanced, so they stay shallow."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.cel_env import VARS, Arch, Ctx, make_env

from mcp_defense.policy import cel
from mcp_defense.policy.facts import CallFacts

ENV = make_env()
N = cel.MAX_NESTING


def nested_args(depth: int) -> dict[str, Any]:
    args: dict[str, Any] = {"a": 1}
    for _ in range(depth):
        args = {"a": args}
    return args


# Each shape has exactly `k` levels of nesting.
SHAPES: dict[str, Callable[[int], str]] = {
    "parentheses": lambda k: "(" * k + "true" + ")" * k,
    "negations": lambda k: "!" * k + "true",
    "additions": lambda k: "1 + " * k + "1",
    "calls": lambda k: "string(" * k + '"a"' + ")" * k,
    "lists": lambda k: "[" * k + "1" + "]" * k,
    "fields": lambda k: "call.args" + ".a" * (k - 1),
    "indexes": lambda k: "call.args" + '["a"]' * (k - 1),
    # the receiver `[1]` of the innermost macro is one level deeper than the macro
    "macros": lambda k: (
        "".join(f"[1].exists(x{i}, " for i in range(k - 1)) + "true" + ")" * (k - 1)
    ),
    "ternaries": lambda k: "call.writes ? false : " * (k - 1) + "true",  # + `call.writes`
}


def deep_stack(frames: int, fn: Callable[[], Any]) -> Any:
    """Run `fn` with `frames` more frames on the stack than the test has (the proxy and the
    CLI call the compiler and the closures from deep inside their own code)."""
    return fn() if frames == 0 else deep_stack(frames - 1, fn)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_nesting_up_to_the_limit_compiles_and_runs(shape: str) -> None:
    src = SHAPES[shape](N)
    ctx = Ctx(CallFacts("t", nested_args(N)), None)

    def compile_and_run() -> Any:
        low = cel.lower(cel.parse(src), ENV, {"archetype": Arch(), "vars": dict(VARS)})
        return low.fn(ctx)

    deep_stack(500, compile_and_run)  # no RecursionError, with room to spare


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_nesting_past_the_limit_is_a_diagnostic(shape: str) -> None:
    src = SHAPES[shape](N + 1)
    with pytest.raises(cel.CelError) as e:
        cel.parse(src)
    assert f"more than {N} levels" in e.value.message
    assert e.value.line == 1 and 1 <= e.value.column <= len(src)


def test_the_deepest_level_is_the_position() -> None:
    with pytest.raises(cel.CelError) as e:
        cel.parse("call.writes &&\n  " + "!" * (N + 1) + "call.reads")
    assert (e.value.line, e.value.column) == (2, 2 + N)  # `&&` is the first level


def test_long_or_chains_are_balanced() -> None:
    terms = 4000
    src = " || ".join(f'call.tool == "t{i}"' for i in range(terms))
    low = cel.lower(cel.parse(src), ENV, {"archetype": Arch(), "vars": dict(VARS)})
    for tool, want in (("t0", True), (f"t{terms - 1}", True), ("t2500", True), ("x", False)):
        ctx = Ctx(CallFacts(tool, {}), None)
        assert deep_stack(700, lambda c=ctx: low.fn(c)) is want  # a left-deep chain would not fit
    assert cel.estimate_cost(cel.parse(src), ENV) > terms
    with pytest.raises(cel.CelError) as e:  # the clause is still found at its own position
        cel.check(cel.parse("call.writes || " * 100 + "call.nope"), ENV)
    assert (e.value.line, e.value.column) == (1, 15 * 100 + 6)


def test_source_length_limit() -> None:
    src = "true" + " && true" * (cel.MAX_SOURCE_LENGTH // 8)
    with pytest.raises(cel.CelError) as e:
        cel.parse(src)
    assert "expression too long" in e.value.message
    assert (e.value.line, e.value.column) == (1, cel.MAX_SOURCE_LENGTH + 1)


# ---------------------------------------------------------------------------------------------
# Through the command line, as a user meets them

DEEP = {
    "parens": "(" * 100 + "call.writes" + ")" * 100,
    "nots": "!" * 3000 + "call.writes",
    "ors": " || ".join(f'call.tool == "t{i}"' for i in range(20000)),
}


def _policy(tmp_path: Path, name: str) -> Path:
    p = tmp_path / f"{name}.mcpd"
    p.write_text(f'rule deep_{name} {{\n  when {DEEP[name]}\n  deny "too deep"\n}}\n')
    return p


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_defense.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("name", sorted(DEEP))
def test_lint_reports_deep_expressions(tmp_path: Path, name: str) -> None:
    p = _policy(tmp_path, name)
    r = _run("policy", "lint", str(p))
    assert r.returncode == 1, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert "Traceback" not in out and "RecursionError" not in out
    want = "expression too long" if name == "ors" else f"more than {cel.MAX_NESTING} levels"
    assert f"{p}:2:" in out and want in out


@pytest.mark.parametrize("name", sorted(DEEP))
def test_proxy_start_refuses_deep_expressions(tmp_path: Path, name: str) -> None:
    p = _policy(tmp_path, name)
    r = _run("stdio", "--archetype", "filesystem", "--policy", str(p), "--", "cat")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr
    assert f"{p}:2:" in r.stderr


# ---------------------------------------------------------------------------------------------
# Cost: superlinear forms are refused at lint time; a run-time budget bounds the rest

QUADRATIC = [
    "call.paths.filter(a, a in call.paths).size() == 0",  # issue 12: took 20 s at 50,000 paths
    "call.paths.exists(p, call.hosts.exists(h, p == h))",
    "call.paths.exists(p, p in call.args.files)",
    "call.paths.all(p, call.paths == call.urls)",
    "call.args.files.map(f, call.paths.filter(p, p == f))",
    "call.paths.map(p, call.paths + call.hosts).size() > 0",  # copies a list per element
]


@pytest.mark.parametrize("src", QUADRATIC)
def test_superlinear_expressions_exceed_the_cost_limit(src: str) -> None:
    assert cel.estimate_cost(cel.parse(src), ENV) > cel.COST_LIMIT


def test_linear_scans_of_the_largest_lists_fit() -> None:
    for src in (
        'call.paths.exists(p, jewel(p) == "crown") && call.hosts.all(h, !is_private(h))',
        '"/w/.env" in call.paths || call.urls.exists_one(u, u.matches("^http://"))',
        'call.args.files.filter(f, f.endsWith(".env")).size() > 0',
    ):
        assert cel.estimate_cost(cel.parse(src), ENV) <= cel.COST_LIMIT, src


def test_lint_refuses_the_cost_bypass(tmp_path: Path) -> None:
    p = tmp_path / "bypass.mcpd"
    p.write_text(
        "rule bypass {\n  when call.paths.filter(a, a in call.paths).size() == 0\n"
        '  deny "never"\n}\n'
    )
    r = _run("policy", "lint", str(p))
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{p}:2:8:" in r.stdout + r.stderr and "[cel-cost]" in r.stdout + r.stderr


class BudgetCtx(Ctx):
    """A context with a decision budget, like the table's EvalCtx."""

    budgeted = True


@pytest.fixture
def no_budget_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget runs out at the first check after the clock starts (no timing involved)."""
    from mcp_defense.policy.cel import runtime

    monkeypatch.setattr(runtime, "EVAL_BUDGET_S", -1.0)


def _lowered(src: str) -> cel.Lowered:
    return cel.lower(cel.parse(src), ENV, {"archetype": Arch(), "vars": dict(VARS)})


@pytest.mark.usefixtures("no_budget_left")
def test_long_comprehensions_stop_at_the_budget() -> None:
    paths = tuple(f"/w/f{i}" for i in range(200))
    for src in (
        "call.paths.exists(p, p == call.tool)",
        "call.paths.all(p, p != call.tool)",
        "call.paths.filter(p, p.startsWith(call.tool)).size() > 0",
        'call.paths.map(p, p + "x").size() > 0',
        'call.paths.exists_one(p, jewel(p) == "crown")',
        "call.paths.exists(p, p == call.tool) || call.writes",  # || cannot absorb it
    ):
        ctx = BudgetCtx(CallFacts("t", {}, paths=paths, writes=True), None)
        with pytest.raises(cel.CelBudgetExceeded):
            _lowered(src).fn(ctx)


@pytest.mark.usefixtures("no_budget_left")
def test_nested_comprehensions_check_the_budget_on_entry() -> None:
    ctx = BudgetCtx(CallFacts("t", {}, paths=("/a", "/b"), hosts=("a", "b")), None)
    with pytest.raises(cel.CelBudgetExceeded):
        _lowered("call.paths.exists(p, call.hosts.exists(h, p == h))").fn(ctx)


@pytest.mark.usefixtures("no_budget_left")
def test_the_hot_path_never_reads_the_clock() -> None:
    # short comprehensions, and `exists`/`all` over one call or comparison per element (the
    # shipped rules' shape: linear, bounded by the static cost) at the top level
    ctx = BudgetCtx(CallFacts("t", {}, paths=tuple(f"/w/{i}" for i in range(16))), None)
    assert _lowered("call.paths.exists(p, p == call.tool)").fn(ctx) is False
    ctx = BudgetCtx(CallFacts("t", {}, paths=tuple(f"/w/{i}" for i in range(5000))), None)
    assert _lowered('call.paths.exists(p, jewel(p) == "crown")').fn(ctx) is False
    assert _lowered("call.paths.all(p, !is_private(p))").fn(ctx) is True
    assert not hasattr(ctx, "deadline")  # the clock never started


def test_contexts_without_a_budget_run_unbounded() -> None:
    ctx = Ctx(CallFacts("t", {}, paths=tuple(f"/w/{i}" for i in range(500))), None)
    assert _lowered('call.paths.exists(p, jewel(p) == "crown")').fn(ctx) is False


@pytest.fixture(scope="module")
def slow_table(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import mcp_defense

    p = tmp_path_factory.mktemp("budget") / "policy.mcpd"
    p.write_text(
        'import "builtin:rules.mcpd"\n\n'
        "rule path_is_tool {\n"
        "  when call.paths.exists(p, p == call.tool)\n"
        '  deny "a path named like the tool"\n}\n'
    )
    return mcp_defense.compile([p], {"workspace": "/workspace", "home": "/home/alice"})


def _decide_paths(table: Any, n: int) -> Any:
    from mcp_defense.policy.facts import ToolCall

    paths = [f"/workspace/src/f{i}.py" for i in range(n)]
    return table.decide(ToolCall("filesystem", "read_multiple_files", {"paths": paths}))


@pytest.mark.usefixtures("no_budget_left")
def test_table_denies_a_decision_past_its_budget(slow_table: Any) -> None:
    d = _decide_paths(slow_table, 300)
    assert (d.action.value, d.rule) == ("deny", "budget_exceeded")
    assert "path_is_tool" in d.reason and "budget" in d.reason


def test_table_decides_normally_within_the_budget(slow_table: Any) -> None:
    d = _decide_paths(slow_table, 300)
    assert (d.action.value, d.rule) == ("allow", "")
