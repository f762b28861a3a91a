"""Delivery of events to one remote sink without ever blocking or slowing the proxy.

`emit`, on the proxy's thread, appends the event object to a deque: no lock, no condition,
no wake-up (a deque's append is atomic). Two background threads do the rest:

* the spooler wakes every `flush_s` (batching by time, not per event), takes what was
  emitted, builds it (a call's events come as `LazyEvent`s when every sink is a forwarder:
  `Recorder.emit_later`), masks and encodes it, and appends the lines to the sink's on-disk
  spool, so an event is on disk within `flush_s` even while the sink hangs;
* the sender sends the oldest spooled batch and advances the spool only once the sink
  accepted it. A failure (refused, an error status, a timeout) is retried with exponential
  backoff and jitter while new events keep going to the spool, which is bounded: past its
  limit the oldest events are dropped and an `events_dropped` event says how many.

A restarted proxy with the same sink finds the spool and delivers what is left, first.

Delivery is at-least-once: a batch the sink accepted but whose answer was lost (a timeout,
a crash before the spool advanced) is sent again. Every event carries a unique `event_id`;
receivers de-duplicate on it.
"""

from __future__ import annotations

import gc
import hashlib
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mcp_defense.events.mask import masked
from mcp_defense.events.model import Event, EventsDropped
from mcp_defense.events.record import LazyEvent, event_line

MAX_SLOTS = 64


class Transport(Protocol):
    """Sends one batch of event lines (JSON objects, masked); raises on any failure."""

    name: str  # for messages and the spool's directory name (no secrets)

    def send(self, lines: list[bytes]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    spool_dir: Path
    spool_max_bytes: int = 64 << 20
    batch_size: int = 500  # events per request
    flush_s: float = 0.2  # the spooler's period: the longest an event waits in memory
    retry_min_s: float = 0.5
    retry_max_s: float = 60.0
    close_timeout_s: float = 5.0  # at exit: how long to try delivering what is left
    memory_max_events: int = 100_000  # between emit and the spool (a slow disk)
    adopt_every_s: float = 10.0  # how often an idle forwarder looks for spools left behind
    # The spooler encodes this many events, then lets the proxy's threads have the
    # interpreter (a sleep releases the GIL): its work never holds up a call for long.
    slice_events: int = 64
    slice_pause_s: float = 50e-6


# Between two spooler ticks the queued events (and the arguments they hold) stay alive. With
# CPython's default threshold (700 more tracked objects allocated than freed) that tick's
# worth of events set off young collections that scanned them and promoted them, so full
# collections followed, traversing every object of the process (the policy table too):
# measured ~7 µs per call on average and pauses of tens of ms, where the proxy without a
# sink collects nothing (each call frees what it allocates). Above a tick's worth of events
# (objects per call x calls per flush_s, with room), the proxy collects as seldom as without
# a sink; cyclic garbage is still collected, after more allocations.
GC_YOUNG_THRESHOLD = 50_000


def _collect_less_often() -> None:
    young, *older = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:  # 0: collection disabled, leave it so
        gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


def encode(event: Event) -> bytes:
    """The line a sink receives: the event with secret-looking arguments masked."""
    return event_line(masked(event))


def backoff_s(failures: int, lo: float, hi: float) -> float:
    """Exponential, capped, with 'equal jitter' so many proxies do not retry in step."""
    d = min(hi, lo * 2 ** max(failures - 1, 0))
    return d / 2 + random.uniform(0, d / 2)


class Forwarder:
    """An event sink (`emit`/`close`) that delivers to `transport` through a spool."""

    def __init__(
        self,
        transport: Transport,
        config: DeliveryConfig,
        *,
        report: Callable[[Event], None] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        from mcp_defense.events.sinks.spool import Spool, SpoolBusy

        self.transport = transport
        self.config = config
        self.report = report
        _collect_less_often()
        self._warn = warn or (lambda m: print(m, file=sys.stderr, flush=True))
        key = hashlib.sha256(transport.name.encode()).hexdigest()[:16]
        self._base = config.spool_dir / key
        self.adopted: list[Spool] = []
        spool: Spool | None = None
        for n in range(MAX_SLOTS):
            try:
                spool = Spool(self._base / f"slot-{n}", config.spool_max_bytes)
                break
            except SpoolBusy:
                continue
        if spool is None:
            raise OSError(f"all {MAX_SLOTS} spool slots of {self._base} are in use")
        self.spool = spool
        self._adopt()
        self._last_adopt = time.monotonic()
        # emit -> spooler: appends and pops of a deque are atomic, so neither side locks.
        self._queue: deque[Event | LazyEvent] = deque()
        self._shed: deque[None] = deque()  # one entry per event dropped from a full queue
        self._unencodable = 0  # events the spooler could not build or encode (never expected)
        self._max_queued = config.memory_max_events
        self._unspooled: list[bytes] = []  # lines a failing spool disk did not take yet
        self._spool_lock = threading.Lock()  # the spooler's appends vs the sender's reads
        self._spooler_wake = threading.Event()  # set by close() only, never by emit
        self._sender_wake = threading.Event()  # something was spooled, or close()
        self._stop = False
        self._spooled_all = False  # the spooler has spooled everything and stopped
        self._failures = 0
        self._next_try = 0.0
        self.delivered = 0
        short = transport.name[:40]
        self._spooler = threading.Thread(
            target=self._run_spooler, name=f"mcpd-spool {short}", daemon=True
        )
        self._sender = threading.Thread(
            target=self._run_sender, name=f"mcpd-sink {short}", daemon=True
        )
        self._spooler.start()
        self._sender.start()

    # --- the proxy's side: one append -----------------------------------------------------------

    def emit(self, event: Event | LazyEvent) -> None:
        # Masking and encoding happen on the spooler (events are not changed after they are
        # emitted), and building too for a LazyEvent (`Recorder.emit_later`); the spooler
        # wakes by itself every flush_s.
        q = self._queue
        q.append(event)
        if len(q) > self._max_queued:
            try:
                q.popleft()
            except IndexError:  # the spooler emptied it meanwhile
                return
            self._shed.append(None)

    emit_lazy = emit

    @property
    def queued(self) -> int:
        """Events emitted and not spooled yet."""
        return len(self._queue)

    # --- the spooler ------------------------------------------------------------------------------

    def _spool_loop(self) -> None:
        while True:
            stopping = self._stop
            if not stopping:
                self._spooler_wake.wait(self.config.flush_s)
            self._spool_queued()
            if stopping:
                return

    def _take(self) -> list[Event | LazyEvent]:
        taken: list[Event | LazyEvent] = []
        pop = self._queue.popleft
        try:
            for _ in range(len(self._queue)):
                taken.append(pop())
        except IndexError:  # emit shed the oldest meanwhile (a full queue)
            pass
        return taken

    def _encode(self, events: list[Event | LazyEvent]) -> list[bytes]:
        lines: list[bytes] = []
        step, pause = self.config.slice_events, self.config.slice_pause_s
        for i in range(0, len(events), step):
            if i:
                time.sleep(pause)
            for e in events[i : i + step]:
                try:
                    lines.append(encode(e() if isinstance(e, LazyEvent) else e))
                except Exception as x:  # noqa: BLE001 - one bad event must not stop the others
                    self._warn(
                        f"mcp-defense: sink {self.transport.name}: an event could not be "
                        f"encoded ({_brief(x)}); it is reported as dropped"
                    )
                    self._unencodable += 1
        return lines

    def _spool_queued(self) -> None:
        events = self._take()
        lines = self._encode(events) if events else []
        if self._unspooled:
            lines, self._unspooled = self._unspooled + lines, []
        shed = 0
        while self._shed:
            self._shed.popleft()
            shed += 1
        try:
            if lines:
                with self._spool_lock:
                    n = self.spool.append(lines)
                self._sender_wake.set()
                if n:
                    self._dropped(n, "spool over its size limit (oldest dropped first)")
            if shed:
                self._dropped(shed, "in-memory queue full while the spool lagged")
            if self._unencodable:
                n, self._unencodable = self._unencodable, 0
                self._dropped(n, "could not be encoded (an internal error)")
        except OSError as e:  # the spool's disk: keep the lines, retry at the next tick
            self._unspooled = lines
            excess = len(self._unspooled) - self.config.memory_max_events
            if excess > 0:
                del self._unspooled[:excess]
                for _ in range(excess):
                    self._shed.append(None)
            self._warn(f"mcp-defense: sink {self.transport.name}: spool: {e}")
            if self._stop:
                self._warn(
                    f"mcp-defense: sink {self.transport.name}: {len(self._unspooled)} "
                    "event(s) could not be spooled at exit"
                )

    def _dropped(self, n: int, reason: str) -> None:
        ev = EventsDropped(sink=self.transport.name, dropped=n, reason=reason)
        self._warn(f"mcp-defense: sink {self.transport.name}: dropped {n} event(s): {reason}")
        if self.report is not None:
            self.report(ev)  # to every sink (this one too) and the recording
        else:
            with self._spool_lock:
                self.spool.append([encode(ev)])

    # --- the sender -------------------------------------------------------------------------------

    def _adopt(self) -> None:
        """Take over the spools of proxies that are gone (unlocked slots with events left):
        they are delivered before this proxy's own events."""
        from mcp_defense.events.sinks.spool import Spool, SpoolBusy

        held = {self.spool.dir, *(s.dir for s in self.adopted)}
        for d in sorted(self._base.glob("slot-*")):
            if d in held or not any(d.glob("seg-*.jsonl")):
                continue
            try:
                s = Spool(d, self.config.spool_max_bytes)
            except (SpoolBusy, OSError):
                continue
            if s.empty:
                s.close()
            else:
                self.adopted.append(s)

    def _pending(self) -> bool:
        if any(not s.empty for s in self.adopted):
            return True
        with self._spool_lock:
            return not self.spool.empty

    def _send_one(self) -> bool:
        """Send the oldest spooled batch (adopted spools first); False on failure."""
        while self.adopted and self.adopted[0].empty:
            self.adopted.pop(0).remove()
        own = not self.adopted
        spool = self.spool if own else self.adopted[0]
        with self._spool_lock:
            lines, cursor = spool.peek(self.config.batch_size)
        if not lines:
            return True
        try:
            self.transport.send(lines)
        except Exception as e:  # noqa: BLE001 - any failure is retried, never raised to the proxy
            self._failures += 1
            delay = backoff_s(self._failures, self.config.retry_min_s, self.config.retry_max_s)
            self._next_try = time.monotonic() + delay
            if self._failures == 1:
                self._warn(
                    f"mcp-defense: sink {self.transport.name} failed ({_brief(e)}); spooling "
                    "events and retrying (one warning per outage)"
                )
            return False
        if self._failures:
            self._warn(
                f"mcp-defense: sink {self.transport.name} delivers again "
                f"after {self._failures} failed attempt(s)"
            )
        self._failures = 0
        self._next_try = 0.0
        with self._spool_lock:
            spool.commit(cursor)
        self.delivered += len(lines)
        return True

    def _send_loop(self) -> None:
        deadline: float | None = None
        while True:
            self._sender_wake.clear()  # a set() from now on ends the wait below at once
            if self._spooled_all and deadline is None:  # close(): a last, bounded attempt
                deadline = time.monotonic() + self.config.close_timeout_s
            pending = self._pending()
            now = time.monotonic()
            if deadline is not None and (not pending or now >= deadline or self._failures):
                return
            if pending and now >= self._next_try:
                self._send_one()
                continue
            if not pending and now - self._last_adopt >= self.config.adopt_every_s:
                self._last_adopt = now
                self._adopt()
                continue
            if pending:
                wait = self._next_try - now
            else:
                wait = self.config.adopt_every_s - (now - self._last_adopt)
            if deadline is not None:
                wait = min(wait, deadline - now)
            self._sender_wake.wait(max(0.0, wait))

    # --- both -------------------------------------------------------------------------------------

    def _run_spooler(self) -> None:
        try:
            self._guarded(self._spool_loop)
        finally:
            self._spooled_all = True
            self._sender_wake.set()

    def _run_sender(self) -> None:
        try:
            self._guarded(self._send_loop)
        finally:  # the spools are the sender's to close, once the spooler is done with them
            self._spooler.join()
            self.spool.close()
            for s in self.adopted:
                s.close()

    def _guarded(self, loop: Callable[[], None]) -> None:
        """Run `loop`; an internal error never ends it (events would stop silently)."""
        while True:
            try:
                loop()
                return
            except Exception as e:  # noqa: BLE001 - a dead worker would lose events silently
                self._warn(
                    f"mcp-defense: sink {self.transport.name}: internal error "
                    f"({_brief(e)}); events stay in the spool, retrying"
                )
                if self._stop:
                    return
                time.sleep(min(1.0, self.config.retry_max_s))

    def close(self) -> None:
        """Spool what was emitted, then stop after a last delivery attempt (bounded by
        `close_timeout_s`); what is still undelivered stays in the spool for the next run."""
        if self._stop:
            return
        self._stop = True
        self._spooler_wake.set()
        self._spooler.join(self.config.close_timeout_s + 1.0)
        self._sender_wake.set()
        self._sender.join(self.config.close_timeout_s + 1.0)
        if self._sender.is_alive():  # stuck in a request: the spool keeps what is unconfirmed
            self._warn(
                f"mcp-defense: sink {self.transport.name}: delivery still in progress at exit; "
                f"undelivered events are kept in {self.spool.dir} for the next run"
            )
            return
        self.transport.close()
        left = self.spool.pending_bytes
        if left > 0:
            self._warn(
                f"mcp-defense: sink {self.transport.name}: {left} byte(s) of events not "
                f"delivered yet, kept in {self.spool.dir} for the next run"
            )


def _brief(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) < 200 else text[:199] + "…"
