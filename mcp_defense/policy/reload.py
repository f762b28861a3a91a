"""Hot reload: watch the policy files, compile off the hot path, swap the table atomically.

Why it is built this way:

* The table in force lives in one attribute of a `TableRef`. A runtime reads it once per call
  (one attribute load, atomic under the GIL), so a call in flight finishes under the table it
  started with, and every decision names the `policy_version` that made it.
* A broken policy never opens the gate: a reload that does not compile (or drops an archetype
  the runtime serves) leaves the last good table in force and reports file:line:col on stderr
  and as a `policy_reload_failed` event. The next good save recovers.
* Editors save by writing a temporary file and renaming it over the original, and ConfigMap
  style deployments swap a symlink: the *directories* are watched, not the files, and a
  content snapshot decides whether anything the policy reads really changed, so editor noise
  (swap files, lock files, `4913`) costs a few reads, not a compile.
* Bursts are coalesced twice: watchfiles groups events until `step_ms` of quiet (bounded by
  `debounce_ms`), and the worker drains every request queued while it was compiling into a
  single reload.
* Only watchfiles' public `watch()` is used. It yields when its Rust side times out
  (`timeout_ms`), so the first yield says the watch is established: only then is the watch
  "ready" and the files checked again, so nothing written meanwhile is missed.
* Hot reload reaches policy text only through the loader: `LoadResult.texts` says which text
  each load compiled, so the snapshot compares files with what is really in force.
* Requests go through a `queue.SimpleQueue`, whose `put` is reentrant, so `request_reload` is
  safe to call from a signal handler (SIGHUP).
* Calls keep flowing while a reload compiles: the whole reload runs under
  `background.compiling()` (no full garbage collection walks the heap, a short GIL switch
  interval), and the table that leaves force (or a duplicate of the one in force) is let go a
  piece at a time by `background.release()`, never in one long deallocation. Outcomes keep only
  the table in force: a rejected or duplicate table is not kept alive by `last`.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import watchfiles

from mcp_defense.events.model import Event, PolicyReloaded, PolicyReloadFailed
from mcp_defense.policy import background
from mcp_defense.policy.ast import Span
from mcp_defense.policy.diagnostics import ERROR, Diagnostic, format_text
from mcp_defense.policy.loader import (
    DirectoryTooLarge,
    LoadResult,
    ParseCache,
    PolicyTooLarge,
    load,
    policy_files,
    read_policy,
    text_digest,
)
from mcp_defense.policy.table import DecisionTable
from mcp_defense.resources import BUILTIN_PREFIX, builtin_policy_dir

# watchfiles grouping: return once `step` ms pass without a new event (at most `debounce` ms
# after the first). An editor's write-temp-then-rename lands well inside one step.
DEFAULT_STEP_MS = 20
DEFAULT_DEBOUNCE_MS = 500
# How long the Rust side waits before returning 'timeout' (stop is checked every step anyway).
# The first timeout is also how the watcher learns that its watch is established, so this
# bounds how long a (re)watch takes to be ready; an idle wake-up costs a few microseconds.
DEFAULT_TIMEOUT_MS = 100
_READY_TIMEOUT_S = 10.0

_UNKNOWN = "\0unknown"  # a snapshot value that never matches: forces the next check to reload
_MISSING = "\0missing"

# Reasons a reload runs (ReloadOutcome.reason).
INITIAL = "initial"
CHANGE = "change"
SIGNAL = "signal"


class TableRef:
    """The table in force. Runtimes call `get()` (or read `.table`) once per call."""

    __slots__ = ("table",)

    def __init__(self, table: DecisionTable) -> None:
        self.table = table

    def get(self) -> DecisionTable:
        return self.table


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What one reload attempt did (listeners and `policy watch` read it)."""

    reason: str  # initial | change | signal
    ok: bool  # compiled and acceptable
    swapped: bool  # a new table is now in force
    result: LoadResult
    old_version: str  # in force before the attempt ("" when there was none)
    version: str  # in force after the attempt
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    duration_ms: float = 0.0
    diagnostics: tuple[Diagnostic, ...] = ()  # the errors, when not ok


def rule_diff(
    old: Mapping[str, str], new: Mapping[str, str]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Rules added, removed and changed between two `rule_fingerprints` maps (sorted)."""
    added = tuple(sorted(n for n in new if n not in old))
    removed = tuple(sorted(n for n in old if n not in new))
    changed = tuple(sorted(n for n in new if n in old and old[n] != new[n]))
    return added, removed, changed


# ---------------------------------------------------------------------------------------------
# What to watch, and whether anything really changed


def _roots(paths: Sequence[str | Path] | None) -> tuple[Path, ...]:
    """The inputs as given (absolute, symlinks *not* resolved: a swapped link must show)."""
    out: list[Path] = []
    for raw in paths or [builtin_policy_dir()]:
        s = str(raw)
        p = (
            builtin_policy_dir() / s[len(BUILTIN_PREFIX) :]
            if s.startswith(BUILTIN_PREFIX)
            else Path(s)
        )
        out.append(Path(os.path.abspath(p)))
    return tuple(out)


def _existing(d: Path) -> Path:
    """`d`, or its nearest existing ancestor: watching that notices `d` being (re)created."""
    while not d.is_dir() and d.parent != d:
        d = d.parent
    return d


def watch_dirs(roots: Iterable[Path], files: Iterable[Path]) -> frozenset[str]:
    """Directories to watch (non-recursively): every directory a root could load from, the
    unresolved and resolved parents of file roots, and the parent of every file read."""
    dirs: set[Path] = set()
    for r in roots:
        if r.is_dir():
            for d, _subdirs, _files in os.walk(r, followlinks=True):
                dirs.add(Path(d))
        else:
            dirs.add(r.parent)
            dirs.add(r.resolve().parent)
    for f in files:
        dirs.add(f.parent)
    return frozenset(str(_existing(d)) for d in dirs)


def _dir_key(dirs: Iterable[str]) -> frozenset[tuple[str, int, int]]:
    """Directories with their identity: one deleted and recreated needs a new inotify watch."""
    out: set[tuple[str, int, int]] = set()
    for d in dirs:
        try:
            st = os.stat(d)
            out.add((d, st.st_dev, st.st_ino))
        except OSError:
            out.add((d, -1, -1))
    return frozenset(out)


def _source_path(display: str) -> Path:
    """Where a file named as in diagnostics (`builtin:…`, cwd-relative or absolute) lives."""
    if display.startswith(BUILTIN_PREFIX):
        return builtin_policy_dir() / display[len(BUILTIN_PREFIX) :]
    return Path(display)


def _probe(key: str) -> str:
    """The current value of one snapshot entry (cheap: a read, a stat or a listing)."""
    kind, path = key[0], key[2:]
    try:
        if kind == "t":  # text a load compiled, by its display name: read as the loader does
            return text_digest(read_policy(_source_path(path)))
        if kind == "m":  # a file a load tried to read (it may have been unreadable)
            return text_digest(read_policy(Path(path)))
        if kind == "d":  # a directory holding policy files: which .mcpd files it has
            # (dot files are editor locks and swap files, e.g. emacs' `.#rules.mcpd`)
            names = (n for n in os.listdir(path) if n.endswith(".mcpd") and n[0] != ".")
            return "\n".join(sorted(names))
        p = Path(path)  # "r": a root as given: what it resolves to, or every file under it
        if p.is_dir():
            return "\n".join(str(x) for x in policy_files(p))
        return str(p.resolve(strict=True))
    except (PolicyTooLarge, DirectoryTooLarge):
        return "too-large"  # (no reload compiles it; one that shrinks it changes the value)
    except (OSError, UnicodeDecodeError):
        return _MISSING


def _layout_keys(roots: Iterable[Path], files: Iterable[Path]) -> list[str]:
    """Keys for what a load *finds* (roots, directory listings, files it tried to read)."""
    files = list(files)
    keys = [f"r:{r}" for r in roots]
    keys += [f"m:{f}" for f in files]
    keys += [f"d:{d}" for d in sorted({str(f.parent) for f in files})]
    return keys


# ---------------------------------------------------------------------------------------------
# The watcher thread


class _Watcher:
    """One RustNotify over a fixed set of directories; replaced when the set changes."""

    def __init__(
        self,
        dirs: frozenset[str],
        key: frozenset[tuple[str, int, int]],
        on_change: Callable[[set[tuple[int, str]]], None],
        on_gone: Callable[[], None],
        step_ms: int,
        debounce_ms: int,
        timeout_ms: int,
        retry_s: float = 0.05,
    ) -> None:
        self.dirs = dirs
        self.key = key
        self._retry_s = retry_s
        self.error: BaseException | None = None
        self.stale = False
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._on_change = on_change
        self._on_gone = on_gone
        self._timing = (debounce_ms, step_ms, timeout_ms)
        self._thread = threading.Thread(target=self._run, name="mcpd-policy-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _watch(self, polling: bool) -> Iterator[set[tuple[watchfiles.Change, str]]]:
        debounce, step, timeout = self._timing
        return watchfiles.watch(
            *sorted(self.dirs),
            watch_filter=None,  # every change: the snapshot decides what matters
            debounce=debounce,
            step=step,
            stop_event=self._stop,
            rust_timeout=timeout,
            yield_on_timeout=True,  # the first yield says the watch is established
            debug=False,
            raise_interrupt=False,
            force_polling=polling,
            poll_delay_ms=200,
            recursive=False,
            ignore_permission_denied=True,
        )

    def _run(self) -> None:
        changes_iter = self._watch(polling=False)
        try:
            try:
                first = next(changes_iter, None)
            except FileNotFoundError:
                raise
            except OSError:
                # inotify unavailable or out of watches: polling is slower but still correct.
                changes_iter = self._watch(polling=True)
                first = next(changes_iter, None)
        except Exception as e:  # noqa: BLE001 - reported by the reloader, never fatal
            self.error = e
            self.ready.set()
            # e.g. a directory vanished between listing and watching: retry (backing off)
            if not self._stop.wait(self._retry_s):
                self._on_gone()
            return
        self.ready.set()
        if first is None:  # stopped before the first yield
            return
        try:
            self._deliver(first)
            for changes in changes_iter:
                if self._stop.is_set():
                    return
                self._deliver(changes)
        except Exception as e:  # noqa: BLE001 - e.g. a watched directory was removed
            self.error = e
            if not self._stop.is_set():
                self._on_gone()
        finally:
            close = getattr(changes_iter, "close", None)
            if close is not None:
                close()

    def _deliver(self, changes: set[tuple[watchfiles.Change, str]]) -> None:
        if not changes:
            return  # a timeout: nothing happened
        if any(path in self.dirs for _, path in changes):
            # A watched directory itself was deleted or moved: this watch is dead even if a
            # new directory gets the same path (and inode number).
            self.stale = True
        self._on_change({(int(kind), path) for kind, path in changes})


# ---------------------------------------------------------------------------------------------
# The reloader

_STOP = ("stop", None)


class PolicyReloader:
    """Keeps `ref.table` equal to the last policy that compiled.

    `start()` primes a parse cache with a first load in the background (swapping if the files
    changed since the runtime loaded them), then watches; `request_reload()` (SIGHUP) forces a
    reload even with `watch=False` (`--no-reload`); `stop()` ends both threads.
    """

    def __init__(
        self,
        paths: Sequence[str | Path] | None,
        variables: Mapping[str, str] | None = None,
        *,
        ref: TableRef | None = None,
        emit: Callable[[Event], None] | None = None,
        stderr: IO[str] | None = sys.stderr,
        archetypes: Collection[str] = (),
        watch: bool = True,
        step_ms: int = DEFAULT_STEP_MS,
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        on_reload: Callable[[ReloadOutcome], None] | None = None,
    ) -> None:
        self.paths = list(paths) if paths else None
        self.variables = dict(variables or {})
        self.ref = ref
        self.archetypes = tuple(archetypes)
        self.watching = watch
        self._emit = emit
        self._stderr = stderr
        self._timing = (step_ms, debounce_ms, timeout_ms)
        self._cache = ParseCache()  # unchanged files are not parsed again
        self._on_reload = on_reload
        self._roots = _roots(self.paths)
        self._current: DecisionTable | None = ref.table if ref is not None else None
        self._leaving: list[DecisionTable] = []  # tables out of force, released after a reload
        self._q: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._watcher: _Watcher | None = None
        self._snap: dict[str, str] = {}
        self._files: list[Path] = []
        self._failing = False
        self._watch_failures = 0
        self._ready = threading.Event()
        self._stopped = False
        self.attempts = 0  # loads run (skipped checks not counted)
        self.swaps = 0
        self.failures = 0
        self.last: ReloadOutcome | None = None

    # --- public API ----------------------------------------------------------------------------

    @property
    def table(self) -> DecisionTable | None:
        """The table in force (the last one that compiled)."""
        return self._current

    @property
    def watched_dirs(self) -> frozenset[str]:
        w = self._watcher
        return w.dirs if w is not None else frozenset()

    def start(self) -> None:
        """Start the worker (idempotent). It loads once, then watches when `watch` is on."""
        with self._lock:
            if self._worker is not None or self._stopped:
                return
            self._worker = threading.Thread(
                target=self._run, name="mcpd-policy-reload", daemon=True
            )
            self._worker.start()

    def wait_ready(self, timeout: float = _READY_TIMEOUT_S) -> bool:
        """Block until the first load is done and the watcher is listening."""
        return self._ready.wait(timeout)

    def request_reload(self) -> None:
        """Force a reload soon. Async-signal-safe (SimpleQueue.put is reentrant): a SIGHUP
        handler may call it directly."""
        self._q.put((SIGNAL, None))

    def install_sighup(self) -> Callable[[], None]:
        """Make SIGHUP force a reload; returns a function that puts the old handler back.
        Signal handlers belong to the main thread: elsewhere this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.signal(signal.SIGHUP, lambda _s, _f: self.request_reload())

        def restore() -> None:
            signal.signal(signal.SIGHUP, previous if previous is not None else signal.SIG_DFL)

        return restore

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and reloading (idempotent, callable from any thread)."""
        with self._lock:
            self._stopped = True
            worker, self._worker = self._worker, None
        self._q.put(_STOP)
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
        w, self._watcher = self._watcher, None
        if w is not None:
            w.stop(timeout)

    def __enter__(self) -> PolicyReloader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- worker --------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._safe_reload(INITIAL)
            self._settle()
        finally:
            self._ready.set()
        while True:
            items = [self._q.get()]
            while True:  # coalesce everything queued while we were busy into one reload
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            kinds = {k for k, _ in items}
            if "stop" in kinds:
                return
            if SIGNAL in kinds:
                self._safe_reload(SIGNAL)
            elif self._changed():
                self._safe_reload(CHANGE)
            # Even without a reload the directories may have changed (one re-created, still
            # empty): watch the new ones now, or what is written into them next is missed.
            self._settle()

    def _changed(self) -> bool:
        return not self._snap or any(_probe(k) != v for k, v in self._snap.items())

    def _settle(self) -> None:
        """Watch what the last load needs. A new watcher starts before the old one stops, and
        then the files are checked again, so a change made in between is not missed."""
        for _ in range(8):  # each round follows a change in the set of files; converges fast
            if not self.watching or self._stopped or not self._rewatch():
                return
            if not self._changed():
                return
            self._safe_reload(CHANGE)

    def _rewatch(self) -> bool:
        """Replace the watcher if the directories (or their inodes) changed; True if it did."""
        dirs = watch_dirs(self._roots, self._files)
        key = _dir_key(dirs)
        old = self._watcher
        if old is not None and old.key == key and old.alive() and not old.stale:
            return False
        step, debounce, timeout = self._timing
        new = _Watcher(
            dirs,
            key,
            lambda ch: self._q.put((CHANGE, ch)),
            lambda: self._q.put(("gone", None)),
            step,
            debounce,
            timeout,
            min(5.0, 0.05 * 2**self._watch_failures),
        )
        new.start()
        new.ready.wait(_READY_TIMEOUT_S)
        if new.error is None:
            self._watch_failures = 0
        else:
            self._watch_failures += 1
            if self._watch_failures == 1:
                self._print(
                    f"mcp-defense: cannot watch the policy files ({new.error}); retrying, "
                    "SIGHUP still reloads"
                )
        self._watcher = new
        if old is not None:
            old.stop()
        if self._stopped:
            new.stop()
        return True

    def _safe_reload(self, reason: str) -> None:
        with background.compiling():
            try:
                self._reload(reason)
            except Exception as e:  # noqa: BLE001 - the worker must survive anything
                self._report_failure(
                    reason,
                    LoadResult(None, [], list(self._files)),
                    [_diag(f"internal error while reloading policy: {type(e).__name__}: {e}")],
                    0.0,
                )
            finally:
                background.release(self._leaving)

    def _reload(self, reason: str) -> ReloadOutcome:
        # Layout (roots, listings) is probed before and after the load; a value that moved
        # meanwhile is unknown, so the next check reloads. File texts come from the loader.
        before = {k: _probe(k) for k in _layout_keys(self._roots, self._files)}
        t0 = time.perf_counter()
        result = load(self.paths, self.variables, cache=self._cache)
        snap: dict[str, str] = {}
        for k in _layout_keys(self._roots, result.files):
            now = _probe(k)
            snap[k] = now if before.get(k, now) == now else _UNKNOWN
        for display, digest in result.texts.items():
            snap[f"t:{display}"] = digest
        self._snap = snap
        self._files = list(result.files)
        self.attempts += 1
        table = result.table
        if table is None:
            errors = result.errors or [_diag("policy did not compile")]
            return self._report_failure(reason, result, errors, _ms(t0))
        missing = [a for a in self.archetypes if a not in table.archetypes]
        if missing:
            self._leaving.append(table)
            return self._report_failure(
                reason,
                dataclasses.replace(result, table=None),
                [
                    _diag(
                        f"the new policy does not define archetype {a!r}, which this runtime "
                        "serves, so the last good policy stays in force; "
                        + (
                            f"it defines: {', '.join(sorted(table.archetypes))}"
                            if table.archetypes
                            else 'it defines no archetype at all (was `import "builtin:"` removed?)'
                        )
                        + f"; define `archetype {a}` or import the file that does",
                        str(self._roots[0]) if self._roots else "policy",
                    )
                    for a in missing
                ],
                _ms(t0),
            )
        return self._install(reason, result, table, t0)

    def _install(
        self, reason: str, result: LoadResult, table: DecisionTable, t0: float
    ) -> ReloadOutcome:
        old = self._current
        old_version = old.version if old is not None else ""
        if old is not None and old.version == table.version:
            # Same policy: the outcome names the table in force, the duplicate goes.
            self._leaving.append(table)
            result = dataclasses.replace(result, table=old)
            out = ReloadOutcome(
                reason, True, False, result, old_version, old_version, duration_ms=_ms(t0)
            )
            if reason == SIGNAL or self._failing:  # say so when asked, or when recovering
                self._announce(out)
            self._failing = False
            return self._done(out)
        self._current = table
        if self.ref is not None:
            self.ref.table = table  # the swap: one attribute store
        if old is not None:
            self._leaving.append(old)
        self.swaps += 1
        added, removed, changed = rule_diff(
            old.rule_fingerprints if old is not None else {}, table.rule_fingerprints
        )
        out = ReloadOutcome(
            reason, True, True, result, old_version, table.version, added, removed, changed, _ms(t0)
        )
        self._failing = False
        if old is not None:  # the first table ever is not a reload
            self._announce(out)
        return self._done(out)

    def _announce(self, out: ReloadOutcome) -> None:
        self._send(
            PolicyReloaded(
                old_version=out.old_version,
                new_version=out.version,
                added=list(out.added),
                removed=list(out.removed),
                changed=list(out.changed),
                duration_ms=round(out.duration_ms, 3),
            )
        )
        if self._stderr is not None:
            what = (
                f"+{len(out.added)} -{len(out.removed)} ~{len(out.changed)} rules"
                if out.swapped
                else "unchanged"
            )
            self._print(
                f"mcp-defense: policy reloaded {out.old_version} → {out.version} "
                f"({what}, {out.duration_ms:.0f} ms)"
            )

    def _report_failure(
        self, reason: str, result: LoadResult, errors: Sequence[Diagnostic], ms: float
    ) -> ReloadOutcome:
        self.failures += 1
        self._failing = True
        version = self._current.version if self._current is not None else ""
        out = ReloadOutcome(
            reason,
            False,
            False,
            result,
            version,
            version,
            duration_ms=ms,
            diagnostics=tuple(errors),
        )
        self._send(
            PolicyReloadFailed(version_in_force=version, diagnostics=[d.short() for d in errors])
        )
        if self._stderr is not None:
            keep = f"keeping version {version}" if version else "no policy in force"
            self._print(f"mcp-defense: policy reload failed, {keep}:\n{format_text(errors)}")
        return self._done(out)

    def _send(self, event: Event) -> None:
        if self._emit is None:
            return
        try:
            self._emit(event)
        except Exception as e:  # noqa: BLE001 - a broken sink must not stop reloads
            self._print(f"mcp-defense: cannot record {event.type} event: {e}")

    def _done(self, out: ReloadOutcome) -> ReloadOutcome:
        self.last = out
        if self._on_reload is not None:
            try:
                self._on_reload(out)
            except Exception as e:  # noqa: BLE001 - a listener must not stop reloads
                self._print(f"mcp-defense: reload listener failed: {e}")
        return out

    def _print(self, text: str) -> None:
        if self._stderr is None:
            return
        try:
            print(text, file=self._stderr, flush=True)
        except (OSError, ValueError):
            pass  # stderr closed: events still carry everything


def _diag(message: str, file: str = "policy") -> Diagnostic:
    return Diagnostic(Span(file, 1, 1), ERROR, "reload", message)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_STEP_MS",
    "PolicyReloader",
    "ReloadOutcome",
    "TableRef",
    "rule_diff",
    "watch_dirs",
]
