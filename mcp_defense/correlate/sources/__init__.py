"""Flow sources: where network flows come from (`--flow-source SPEC`).

Each source runs in one daemon thread and hands every flow, as `FlowFacts`, to a sink
callback together with its own name (the correlator's `on_flow`). A thread pushing into a
callback is what a threaded stdio proxy can consume without an event loop; `stop()` ends it
within one polling interval.

SPEC is one of:
  PATH             JSONL file or FIFO in the published tool's FlowEvent format (followed)
  jsonl:PATH       the same, explicitly
  procfs[:INTERVAL]  poll the server's process tree in /proc (no privileges; default 20ms)
  tetragon:PATH    Cilium Tetragon JSON export (file or FIFO, followed)
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable

from mcp_defense.correlate.proctree import ProcTree
from mcp_defense.policy.facts import FlowFacts

log = logging.getLogger("mcp_defense.correlate.sources")

FlowSink = Callable[[FlowFacts, str], object]
"""Receives (flow, source name); the correlator's `on_flow` fits."""

ErrorSink = Callable[[str], None]
"""Receives one human-readable report per bad input (`PATH:LINE: why`)."""


def _log_error(message: str) -> None:
    log.warning("%s", message)


class FlowSource:
    """A flow producer with a thread of its own. Subclasses implement `_run`."""

    def __init__(self, name: str, *, on_error: ErrorSink | None = None) -> None:
        self.name = name
        self.flows = 0  # delivered to the sink
        self.errors = 0  # bad inputs reported
        self._on_error = on_error or _log_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------
    def start(self, sink: FlowSink) -> FlowSource:
        if self._thread is not None:
            raise RuntimeError(f"flow source {self.name} already started")
        self._thread = threading.Thread(
            target=self._main, args=(sink,), name=f"flow-source:{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the source to end by itself (a file read without following); True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> FlowSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # for subclasses ----------------------------------------------------------------------
    def _run(self, sink: FlowSink) -> None:
        raise NotImplementedError

    def _main(self, sink: FlowSink) -> None:
        try:
            self._run(sink)
        except Exception as e:  # a source must never die silently: the proxy would go blind
            log.exception("flow source %s failed", self.name)
            self._report(f"{self.name}: source failed: {e!r}")

    def _report(self, message: str) -> None:
        self.errors += 1
        try:
            self._on_error(message)
        except Exception:
            log.exception("flow source error callback failed")

    def _deliver(self, sink: FlowSink, flow: FlowFacts) -> None:
        self.flows += 1
        try:
            sink(flow, self.name)
        except Exception:
            # The sink is the correlator; one failing flow must not stop the next ones.
            log.exception("flow sink failed on a flow from %s", self.name)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$")


def parse_duration(text: str) -> float:
    """'20ms', '0.5s' or '0.02' (seconds) -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 20ms or 0.5s)")
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value


def open_source(
    spec: str,
    *,
    server_pid_getter: Callable[[], int | Iterable[int] | None],
    on_error: ErrorSink | None = None,
    proctree: ProcTree | None = None,
    follow: bool = True,
) -> FlowSource:
    """Build (not start) the source a `--flow-source SPEC` names.

    `server_pid_getter` returns the current server pid (or several roots, or None while no
    server runs); only the procfs source calls it, on every poll, so a restarted server is
    followed. `proctree` is the correlator's: sources that learn parent links (procfs,
    Tetragon's process_exec) teach it, so the pid key can match descendants.
    """
    from mcp_defense.correlate.sources.jsonl import JsonlSource
    from mcp_defense.correlate.sources.procfs import DEFAULT_INTERVAL_S, ProcfsSource
    from mcp_defense.correlate.sources.tetragon import TetragonSource

    if not spec:
        raise ValueError("empty flow source spec")
    kind, sep, rest = spec.partition(":")
    if kind == "procfs":
        interval = parse_duration(rest) if sep and rest else DEFAULT_INTERVAL_S
        if interval <= 0:
            raise ValueError("procfs polling interval must be positive")

        def roots() -> list[int]:
            got = server_pid_getter()
            if got is None:
                return []
            if isinstance(got, int):
                return [got] if got > 0 else []
            return [p for p in got if p > 0]

        return ProcfsSource(roots, interval_s=interval, proctree=proctree, on_error=on_error)
    if kind == "tetragon" and sep:
        if not rest:
            raise ValueError("tetragon: needs a path (tetragon:PATH)")
        return TetragonSource(rest, proctree=proctree, on_error=on_error, follow=follow)
    if kind == "jsonl" and sep:
        if not rest:
            raise ValueError("jsonl: needs a path (jsonl:PATH)")
        return JsonlSource(rest, on_error=on_error, follow=follow)
    return JsonlSource(spec, on_error=on_error, follow=follow)


__all__ = ["ErrorSink", "FlowSink", "FlowSource", "open_source", "parse_duration"]
