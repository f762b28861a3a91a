"""Per-call work bounds (policy/extract/limits.py): a call at a bound is decided, one past it is
denied with `malformed_arguments` and a reason naming the bound — through the built-in pack,
with symlink resolution on, as the proxy runs. The resolver that does that work is
`os.path.realpath` exactly (compared on a real tree of symlinks, loops and `..`)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mcp_defense.policy.extract import paths as paths_mod
from mcp_defense.policy.extract.limits import (
    MAX_ITEMS,
    MAX_PATH_CHARS,
    MAX_PATHS,
    MAX_RESOLVE_STEPS,
)
from mcp_defense.policy.extract.paths import Resolver
from mcp_defense.policy.facts import ToolCall
from mcp_defense.policy.loader import load_table
from mcp_defense.policy.table import DecisionTable


@pytest.fixture(scope="module")
def table() -> DecisionTable:
    return load_table(None, {"workspace": "/workspace", "home": "/home/alice"})


def _decide(table: DecisionTable, arch: str, tool: str, args: dict) -> tuple[str, str, str]:
    d = table.decide(ToolCall(archetype=arch, tool=tool, arguments=args, agent_id="t"))
    return d.action.value, d.rule, d.reason


def test_the_issues_99990_paths_are_denied_naming_the_bound(table: DecisionTable) -> None:
    paths = [f"/workspace/src/m{i}/f{i}.py" for i in range(99_990)]
    action, rule, reason = _decide(table, "filesystem", "read_multiple_files", {"paths": paths})
    assert (action, rule) == ("deny", "malformed_arguments")
    assert f"more than {MAX_PATHS:,} distinct paths in one call" in reason


def test_paths_at_the_bound_are_decided(table: DecisionTable) -> None:
    paths = [f"/workspace/src/m{i}/f{i}.py" for i in range(MAX_PATHS)]
    action, rule, _ = _decide(table, "filesystem", "read_multiple_files", {"paths": paths})
    assert (action, rule) == ("allow", "")
    paths[-1] = "/home/alice/.ssh/id_rsa"  # the last of them is still seen
    action, rule, _ = _decide(table, "filesystem", "read_multiple_files", {"paths": paths})
    assert (action, rule) == ("deny", "crown_jewel")


def test_long_paths_past_the_character_bound_are_denied(table: DecisionTable) -> None:
    per = 4000
    n = MAX_PATH_CHARS // per + 1
    paths = [f"/workspace/{i:04}/" + "a" * (per - 16) for i in range(n)]
    assert sum(map(len, paths)) > MAX_PATH_CHARS
    action, rule, reason = _decide(table, "filesystem", "read_multiple_files", {"paths": paths})
    assert (action, rule) == ("deny", "malformed_arguments")
    assert f"more than {MAX_PATH_CHARS:,} characters of distinct paths" in reason
    action, rule, _ = _decide(table, "filesystem", "read_multiple_files", {"paths": paths[:-2]})
    assert (action, rule) == ("allow", "")


def test_deep_paths_past_the_resolution_bound_are_denied(table: DecisionTable) -> None:
    """Each path its own 100-component chain: every component a new prefix to resolve."""
    n = MAX_RESOLVE_STEPS // 100 + 2
    paths = [f"/workspace/{i}/" + "a/" * 98 + "z" for i in range(n)]
    action, rule, reason = _decide(table, "filesystem", "read_multiple_files", {"paths": paths})
    assert (action, rule) == ("deny", "malformed_arguments")
    assert f"more than {MAX_RESOLVE_STEPS:,} path components to resolve" in reason


def test_a_tree_resolves_each_directory_once(table: DecisionTable) -> None:
    """2,048 files in 8 deep directories: well inside the resolution bound."""
    deep = "/workspace/" + "/".join(f"d{k}" for k in range(20))
    paths = [f"{deep}/s{i % 8}/f{i}.py" for i in range(MAX_PATHS)]
    action, rule, _ = _decide(table, "filesystem", "read_multiple_files", {"paths": paths})
    assert (action, rule) == ("allow", "")


@pytest.mark.parametrize("kind", ["words", "keys"])
def test_items_past_the_bound_are_denied(table: DecisionTable, kind: str) -> None:
    def args(n: int) -> dict:
        if kind == "words":
            return {"x": [f"w{i}" for i in range(n)]}
        return {"x": {f"k{i}": 1 for i in range(n)}}

    assert _decide(table, "generic", "t", args(MAX_ITEMS - 10))[:2] == ("allow", "")
    action, rule, reason = _decide(table, "generic", "t", args(MAX_ITEMS + 1))
    assert (action, rule) == ("deny", "malformed_arguments")
    assert f"more than {MAX_ITEMS:,} strings and keys" in reason


@pytest.fixture()
def tree(tmp_path: Path) -> str:
    root = os.path.realpath(tmp_path)
    os.makedirs(f"{root}/a/b/c")
    os.makedirs(f"{root}/d")
    Path(f"{root}/a/b/c/f").write_text("")
    os.symlink(f"{root}/a/b", f"{root}/lb")
    os.symlink("../d", f"{root}/a/rel")
    os.symlink("loop2", f"{root}/loop1")
    os.symlink("loop1", f"{root}/loop2")
    os.symlink("/nonexistent/x", f"{root}/dangling")
    os.symlink(".", f"{root}/self")
    os.symlink("c/f", f"{root}/a/b/tofile")
    os.symlink("lb/../d", f"{root}/physical")
    return root


@pytest.mark.parametrize("shared", [False, True])
def test_the_resolver_is_realpath(tree: str, shared: bool) -> None:
    parts = ["a", "b", "c", "f", "lb", "rel", "loop1", "loop2", "dangling", "self", "tofile"]
    parts += ["physical", "zz", "d"]
    odd = ["..", ".", ""]
    rng = random.Random(11)
    resolver = Resolver()
    for k in range(6000):
        pool = parts if rng.random() < 0.6 else parts + odd
        p = tree + "/" + "/".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
        paths_mod._real_cache.clear()  # the one-second memo would answer the same path
        if not shared or k % 500 == 0:
            resolver = Resolver()
        assert resolver.realpath(p) == os.path.realpath(p), p
