"""Compile in a background thread without stalling the threads that serve calls.

Hot reload compiles in a thread of the runtime's process (a compiled table is Python closures,
which cannot be handed over from another process). Measured with benchmarks/
bench_reload_load.py, three things stalled every call while it ran, all of them the compile
thread holding the GIL:

* Full (generation 2) garbage collections. A compile allocates hundreds of objects per rule;
  each time the heap grew by a quarter CPython walked all of it, the table in force included,
  holding the GIL for hundreds of milliseconds (680 ms at 1,000 rules, more with more rules).
* The old table's deallocation: dropping the last reference to a table frees its whole object
  graph in one C call (18 ms per 1,000 rules).
* The switch interval: a thread waiting for the GIL asks for it only after 5 ms, and a call
  through the proxy takes it back four or five times (after each read and write), so calls
  crawled at a few dozen per second and queued up.

So, for the length of a reload (`compiling()`):

* Everything alive before the compile is frozen (`gc.freeze()`: ignored by collections), full
  collections are off, and young ones still run outside the compile itself (which runs under
  `paused()`: it creates no cycles, tests/test_compile_scaling.py). Afterwards a young collection and a second freeze put the new table out
  of the collector's reach too: collections between reloads walk only what is new since.
  Cyclic garbage that had already reached the old generation is frozen with it: that leak is
  bounded by a full collection (`unfreeze`, `collect`, `freeze`) once the heap has grown by
  half since the last one (or since it was smallest), and each compile leaves only a few
  hundred such objects.
* `release()` drops the table that left force a piece at a time: its objects are listed
  parents first and let go one by one, so no single deallocation frees more than a small
  subtree, and the GIL changes hands between them.
* The switch interval is 0.2 ms, so a call waits at most that long each time it needs the GIL.

Every setting is restored when the last concurrent reload ends; nothing here changes what is
compiled or when a table comes into force.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SWITCH_INTERVAL_S = 0.0002
# Collections of the oldest generation run when generation 1 has been collected this many
# times (and the old generation grew by a quarter): while compiling, never.
_NO_FULL_COLLECTIONS = 1 << 30
RECLAIM_GROWTH = 0.5  # full collection once the heap grew by half since the last one
# A pause that leaves more young objects than this (a large policy's table) freezes them: the
# first young collection after it would otherwise scan them all in one call (0.5 s at 10,000
# rules, on a proxy's start or a `policy lint`), and every full collection after that again.
FREEZE_AFTER_PAUSE = 200_000
RELEASE_MAX_OBJECTS = 100_000  # objects listed by release(); beyond, subtrees go whole
RELEASE_WAIT_S = 0.02  # how long release() waits for a call in flight to let go of a table

_SHARED = (type, types.ModuleType)  # never released with a table (nor module dicts)

_lock = threading.Lock()
_depth = 0
_saved: tuple[float, tuple[int, ...], bool] | None = None
_blocks_after_reclaim: int | None = None
reclaims = 0  # full collections run to bound frozen garbage (tests read it)


@contextmanager
def compiling() -> Iterator[None]:
    """Around one reload (compile, swap, release): keep the other threads responsive."""
    _enter()
    try:
        yield
    finally:
        _exit()


def _enter() -> None:
    global _depth, _saved
    with _lock:
        _depth += 1
        if _depth > 1:
            return
        managed = gc.isenabled()
        _saved = (sys.getswitchinterval(), gc.get_threshold(), managed)
        if managed:
            gc.collect(1)  # young garbage is collected, not frozen
            gc.freeze()
            t0, t1, *_rest = gc.get_threshold()
            gc.set_threshold(t0, t1, _NO_FULL_COLLECTIONS)
        sys.setswitchinterval(SWITCH_INTERVAL_S)


def _exit() -> None:
    global _depth, _saved
    with _lock:
        _depth -= 1
        if _depth > 0 or _saved is None:
            return
        interval, threshold, managed = _saved
        _saved = None
        if managed:
            gc.collect(1)
            gc.freeze()
            gc.set_threshold(*threshold)
            _bound_frozen()
        sys.setswitchinterval(interval)


def _bound_frozen() -> None:
    """After a freeze: one full collection (unfreeze, collect, freeze) once the heap has grown
    by half since the last one, so frozen cyclic garbage stays bounded. Holds `_lock`."""
    global _blocks_after_reclaim, reclaims
    # (gc.get_freeze_count() walks every frozen object: 50 ms at 1,000 rules. The allocator's
    # block count is the heap's size for the price of a walk over pools.)
    blocks = sys.getallocatedblocks()
    base = _blocks_after_reclaim
    if base is None or blocks < base:
        _blocks_after_reclaim = blocks
    elif blocks > base * (1 + RECLAIM_GROWTH):
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        reclaims += 1
        _blocks_after_reclaim = sys.getallocatedblocks()


def release(objs: list[Any]) -> None:
    """Drop the objects in `objs` (the caller's last references: the list is emptied) a piece
    at a time. Objects reachable from them are listed breadth first, parents before children,
    up to RELEASE_MAX_OBJECTS, then let go in that order, so each deallocation frees one
    object (or a small subtree past the limit) and other threads run in between."""
    # (No local may keep one of these objects past the loop below: at the function's end it
    # would free everything under it at once.)
    order: list[Any] = list({id(o): o for o in objs}.values())
    objs.clear()
    roots = len(order)
    seen = {id(o) for o in order}
    seen.update(id(vars(m)) for m in list(sys.modules.values()) if m is not None)
    i = 0
    while i < len(order) and len(order) < RELEASE_MAX_OBJECTS:
        for x in gc.get_referents(order[i]):
            if id(x) not in seen and gc.is_tracked(x) and not isinstance(x, _SHARED):
                seen.add(id(x))
                order.append(x)
        i += 1
    x = None
    # A call in flight may still hold a table it read before the swap: give it a moment, so
    # the last reference (and the whole graph with it) does not go on that call's thread.
    deadline = time.monotonic() + RELEASE_WAIT_S
    while time.monotonic() < deadline and any(sys.getrefcount(order[j]) > 2 for j in range(roots)):
        time.sleep(0.001)
    for j in range(len(order)):
        order[j] = None


_pause_lock = threading.Lock()
_pausers = 0
_pause_was_enabled = False


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic garbage collection while a policy compiles.

    A compile allocates millions of small objects that all live on (ASTs, closures, tables),
    so every full collection meanwhile rescans them for nothing: 10,000 rules took 19 s with
    the collector on and 6 s with it off, and each full collection holds the GIL for seconds,
    stalling the proxy's threads during a hot reload. Compiling creates no reference cycles
    (tested), so there is nothing to collect; reference counting still frees everything.
    Nested and concurrent compiles share one pause (process-wide, like the collector).

    Inside `compiling()` (a hot reload) it does nothing: with the collector off, every object
    of the new table would wait in the youngest generation, and the first collection after
    it (the young collection `compiling` ends with) would scan them all in one call holding
    the GIL — a second's stall at 10,000 rules. There, young collections promote them a
    little at a time and `freeze()` takes them out of reach.

    Outside a reload, a pause that leaves more than FREEZE_AFTER_PAUSE young objects freezes
    them as it ends, for the same reason (bounded like a reload's: `_bound_frozen`).
    """
    global _pausers, _pause_was_enabled
    with _lock:
        reloading = _depth > 0
    if reloading:
        yield
        return
    with _pause_lock:
        if _pausers == 0:
            _pause_was_enabled = gc.isenabled()
            gc.disable()
        _pausers += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pausers -= 1
            if _pausers == 0 and _pause_was_enabled:
                if gc.get_count()[0] > FREEZE_AFTER_PAUSE:
                    with _lock:
                        gc.freeze()
                        _bound_frozen()
                gc.enable()


__all__ = ["RECLAIM_GROWTH", "SWITCH_INTERVAL_S", "compiling", "paused", "release"]
