"""Compiling beside the hot path (policy/background.py): what `compiling()` does to the
collector and the switch interval and puts back, how `release()` lets a graph go, and that
hot reload keeps no table out of force alive. Behaviour only: the latency it buys is
measured by benchmarks/bench_reload_load.py."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.reload_policy import ARCHETYPE, MAIN, markers, save_atomic, wait_until, write_policy

from mcp_defense.policy import background
from mcp_defense.policy.loader import load
from mcp_defense.policy.reload import PolicyReloader, ReloadOutcome, TableRef


class Node:
    """A weak-referenceable object that can be put in a reference cycle."""

    def __init__(self) -> None:
        self.other: object = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the suite runs with a collector that sees everything


def test_compiling_sets_and_restores_interval_and_thresholds() -> None:
    interval, threshold = sys.getswitchinterval(), gc.get_threshold()
    with background.compiling():
        assert sys.getswitchinterval() == pytest.approx(background.SWITCH_INTERVAL_S)
        assert gc.get_threshold()[:2] == threshold[:2]
        assert gc.get_threshold()[2] > 1_000_000  # no full collection while compiling
        with background.compiling():  # concurrent reloads: the last one out restores
            pass
        assert sys.getswitchinterval() == pytest.approx(background.SWITCH_INTERVAL_S)
    assert sys.getswitchinterval() == interval
    assert gc.get_threshold() == threshold


def test_compiling_restores_after_an_exception() -> None:
    interval, threshold = sys.getswitchinterval(), gc.get_threshold()
    with pytest.raises(RuntimeError), background.compiling():
        raise RuntimeError("compile failed")
    assert (sys.getswitchinterval(), gc.get_threshold()) == (interval, threshold)


def test_what_outlives_a_compile_is_out_of_the_collectors_reach() -> None:
    with background.compiling():
        table = [Node() for _ in range(10)]  # what a compile leaves: the new table
    tracked = {id(o) for o in gc.get_objects()}
    assert id(table) not in tracked and id(table[0]) not in tracked  # frozen
    assert gc.get_freeze_count() > 0


def test_short_lived_cycles_of_a_compile_are_collected() -> None:
    with background.compiling():
        obj, ref = cycle()
        del obj
    assert ref() is None  # collected, not frozen


def test_frozen_garbage_is_reclaimed_once_the_heap_grew(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "RECLAIM_GROWTH", 0.05)
    monkeypatch.setattr(background, "_blocks_after_reclaim", None)
    with background.compiling():
        pass  # the baseline
    with background.compiling():
        obj, ref = cycle()
        gc.collect(1)  # survives the young collections (a long-lived compile structure)...
        del obj  # ...then dies in the old generation, which is not collected while compiling
    assert ref() is not None  # frozen with the new table
    reclaims = background.reclaims
    with background.compiling():
        grown = [[i] for i in range(sys.getallocatedblocks() // 5)]  # the heap grows by 20 %
    assert background.reclaims == reclaims + 1
    assert ref() is None
    del grown


def test_release_frees_the_graph_and_keeps_what_others_hold() -> None:
    shared = Node()
    root: dict[str, object] = {}
    refs: list[weakref.ref[Node]] = []
    for i in range(2000):
        leaf = Node()
        leaf.other = [shared, Node()]
        refs.append(weakref.ref(leaf))
        root[f"k{i}"] = [leaf]
    objs: list[object] = [root]
    del root, leaf
    background.release(objs)
    assert objs == []
    assert all(r() is None for r in refs)
    assert isinstance(shared, Node)


def test_release_of_an_object_still_held_elsewhere_frees_nothing() -> None:
    root = [Node() for _ in range(10)]
    inner = weakref.ref(root[3])
    background.release([root])
    assert inner() is root[3] and len(root) == 10


# --- hot reload ------------------------------------------------------------------------------


def test_reload_keeps_no_table_out_of_force(tmp_path: Path) -> None:
    """The old table after a swap, the duplicate of a reload that changed nothing and a table
    rejected for a missing archetype are all let go: the outcomes name only the table in force."""
    main, mk = write_policy(tmp_path / "pol", 0)
    first = load([main], {}).table
    assert first is not None
    seen: list[tuple[str, bool, bool, str]] = []
    r: PolicyReloader

    def listen(o: ReloadOutcome) -> None:  # keeps no outcome (an outcome holds its table)
        what = "none" if o.result.table is None else "in force"
        if o.result.table is not None and o.result.table is not r.table:
            what = "other"
        seen.append((o.reason, o.ok, o.swapped, what))

    r = PolicyReloader(
        [main], {}, ref=TableRef(first), stderr=None, archetypes=[ARCHETYPE], on_reload=listen
    )
    with r:
        assert r.wait_ready(30)
        assert seen == [("initial", True, False, "in force")]  # its own load was a duplicate
        assert r.table is first
        r.request_reload()
        wait_until(lambda: len(seen) == 2, what="reload on request")
        assert seen[1] == ("signal", True, False, "in force")
        save_atomic(mk, markers(1))
        wait_until(lambda: len(seen) == 3, what="swap")
        assert seen[2] == ("change", True, True, "in force")
        wait_until(lambda: sys.getrefcount(first) == 2, what="the old table let go")
        save_atomic(main, 'default allow "no archetype"\n')
        wait_until(lambda: len(seen) == 4, what="rejected reload")
        assert seen[3] == ("change", False, False, "none")
        assert r.last is not None and r.last.result.table is None
        save_atomic(main, MAIN)
        wait_until(lambda: len(seen) == 5, what="recovery")
        assert seen[4][:2] == ("change", True)
