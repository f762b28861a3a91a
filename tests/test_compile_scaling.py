"""What keeps compiling large policies fast and hot reloads free of pauses: shared folding
across archetypes, lazily merged tool indexes, and no reference cycles (the compile runs
with the cyclic garbage collector paused)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from mcp_defense.policy import cel
from mcp_defense.policy.background import paused as gc_paused
from mcp_defense.policy.facts import ToolCall
from mcp_defense.policy.loader import load


@pytest.mark.parametrize(
    ("when", "fields"),
    [
        ("call.spawns && !archetype.spawn", {"spawn"}),
        ('archetype.network == "none" && call.network', {"network"}),
        ("call.paths.exists(p, !archetype.allows_write(p))", {"allows_write"}),
        ("call.paths.exists(archetype, archetype == 'x')", set()),  # a local, not the constant
        ("call.writes", set()),
    ],
)
def test_archetype_fields(when: str, fields: set[str]) -> None:
    assert cel.archetype_fields(cel.parse(when)) == frozenset(fields)


def _policy(tmp_path: Path) -> list[str]:
    pol = tmp_path / "p.mcpd"
    pol.write_text(
        'import "builtin:rules.mcpd"\n'
        'rule no_spawn priority 100 {\n  when call.spawns && !archetype.spawn\n  deny "no spawn"\n}\n'
        'rule quiet priority 100 {\n  when call.network && archetype.network == "none"\n'
        '  deny "no network"\n}\n'
        'rule t1 priority 105 {\n  when call.tool == "t1" && call.writes\n  deny "t1"\n}\n'
        'rule t2 priority 101 {\n  when call.tool == "t1" || call.tool == "t2"\n'
        '  require_approval "t2"\n}\n'
    )
    return [str(pol)]


def test_shared_folding_decides_per_archetype(tmp_path: Path) -> None:
    r = load(_policy(tmp_path), {"workspace": str(tmp_path)})
    assert r.table is not None, r.diagnostics
    t = r.table
    run = {"command": "ls"}
    # filesystem and github agree on spawn=false and share a lowering; shell differs.
    assert t.decide(ToolCall("filesystem", "exec_command", run)).rule == "no_spawn"
    assert t.decide(ToolCall("github", "exec_command", run)).rule == "no_spawn"
    assert t.decide(ToolCall("shell", "run_command", run)).rule != "no_spawn"
    fetch = {"url": "https://example.com/"}
    assert t.decide(ToolCall("filesystem", "fetch", fetch)).rule == "quiet"
    assert t.decide(ToolCall("web-fetch", "fetch", fetch)).rule != "quiet"


def test_methods_share_folding_only_where_their_fields_agree(tmp_path: Path) -> None:
    """`archetype.allows_write(p)` reads `writes` only: filesystem and generic (both the
    workspace) share one compiled rule, shell (workspace and /tmp) and code-execution (/tmp)
    get their own, and each decides by its own globs."""
    pol = tmp_path / "p.mcpd"
    pol.write_text(
        'default allow "ok"\nimport "builtin:archetypes.mcpd"\n'
        "rule outside priority 100 {\n  when call.paths.exists(p, "
        '!archetype.allows_write(p))\n  deny "write outside {path}"\n}\n'
    )
    r = load([str(pol)], {"workspace": "/srv/ws"})  # (not under /tmp)
    assert r.table is not None, r.diagnostics
    t = r.table

    def compiled(arch: str) -> object:
        rules = t.rules_for(arch)
        assert rules is not None
        return next(x for x in rules.every() if x.name == "outside")

    assert compiled("filesystem") is compiled("generic")
    assert compiled("filesystem") is not compiled("shell")
    assert compiled("shell") is not compiled("code-execution")
    inside = {"path": "/srv/ws/a.txt", "content": "x"}
    scratch = {"path": "/tmp/a.txt", "content": "x"}
    for arch, args, rule in [
        ("filesystem", inside, ""),
        ("filesystem", scratch, "outside"),
        ("generic", scratch, "outside"),
        ("shell", scratch, ""),
        ("code-execution", scratch, ""),
        ("code-execution", inside, "outside"),
    ]:
        assert t.decide(ToolCall(arch, "write_file", args)).rule == rule, (arch, args)


def test_tool_index_merges_by_priority(tmp_path: Path) -> None:
    r = load(_policy(tmp_path), {"workspace": str(tmp_path)})
    assert r.table is not None
    t = r.table
    write = {"path": str(tmp_path / "x"), "content": "y"}
    assert t.decide(ToolCall("filesystem", "t1", write)).rule == "t1"  # priority 105 first
    assert t.decide(ToolCall("filesystem", "t1", {})).rule == "t2"
    assert t.decide(ToolCall("filesystem", "t2", {})).rule == "t2"
    assert t.decide(ToolCall("filesystem", "t3", {})).rule != "t2"
    rules = t.rules_for("filesystem")
    assert rules is not None
    assert [x.name for x in rules.every()] == sorted(
        {x.name for x in rules.every()}, key=[x.name for x in rules.every()].index
    )


def test_compiling_creates_no_reference_cycles(tmp_path: Path) -> None:
    """The collector is paused while compiling, and a hot-reloaded table replaces the old
    one by reference counting alone: a cycle would be garbage nobody collects until the next
    full collection, which then holds the GIL for seconds on a large policy."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for paths in (None, _policy(tmp_path)):
            r = load(paths, {"workspace": str(tmp_path)})
            assert r.table is not None
            r.table.decide(ToolCall("filesystem", "read_file", {"path": "/etc/hosts"}))
            del r
        gc.collect()
        kinds = sorted({type(o).__qualname__ for o in gc.garbage})
        assert not gc.garbage, f"{len(gc.garbage)} objects in cycles: {kinds[:20]}"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()


def test_gc_pause_nests_and_restores() -> None:
    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_large_compile_is_frozen_not_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compile that leaves many young objects (a large policy) freezes them when the pause
    ends: the first young collection would otherwise scan the whole table in one call."""
    from mcp_defense.policy import background

    monkeypatch.setattr(background, "FREEZE_AFTER_PAUSE", 1_000)  # the pack is small
    gc.collect()
    gc.unfreeze()
    try:
        r = load(None)
        assert r.table is not None
        assert gc.isenabled()
        assert gc.get_freeze_count() > 1_000
        assert gc.get_count()[0] < 1_000
        assert r.table.decide(ToolCall("filesystem", "read_file", {"path": "/etc/hosts"}))
    finally:
        gc.unfreeze()


def test_rules_that_need_an_effect_are_skipped_without_it(tmp_path: Path) -> None:
    """`call.writes && ...` is false for a call that does not write: such rules are left out
    of the list a read walks (a 10,000-rule policy: 3 ms → 2 µs a call), and still fire, or
    fail closed, for a write."""
    pol = tmp_path / "fx.mcpd"
    pol.write_text(
        'import "builtin:rules.mcpd"\n'
        'rule w priority 100 {\n  when call.writes && call.args.missing == "x"\n  deny "w"\n}\n'
        'rule s priority 100 {\n  when (call.spawns) && call.programs.exists(p, p == "nc")\n'
        '  deny "s"\n}\n'
    )
    r = load([str(pol)], {"workspace": str(tmp_path)})
    assert r.table is not None, r.diagnostics
    t = r.table
    rules = t.rules_for("filesystem")
    assert rules is not None
    by_name = {x.name: x for x in rules.every()}
    assert by_name["w"].needs and by_name["s"].needs
    read = ToolCall("filesystem", "read_file", {"path": str(tmp_path / "a")})
    assert t.decide(read).action.value == "allow"
    walked = {x.name for x in rules.for_tool("read_file", False, 1)}  # reads only
    assert "w" not in walked and "s" not in walked
    write = ToolCall("filesystem", "write_file", {"path": str(tmp_path / "a"), "content": "y"})
    d = t.decide(write)
    assert d.action.value == "deny" and d.rule == "rule_error"  # reads the missing field
    shell = ToolCall("shell", "run_command", {"command": "nc evil.example.com 80"})
    assert t.decide(shell).rule == "s"


def test_gc_pause_steps_aside_during_a_hot_reload() -> None:
    """Inside `compiling()` young collections keep running (a paused collector would leave the
    whole new table for one long young collection at the end)."""
    from mcp_defense.policy.background import compiling

    with compiling():
        with gc_paused():
            assert gc.isenabled()
    assert gc.isenabled()
