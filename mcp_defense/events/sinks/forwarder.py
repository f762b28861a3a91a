"""Delivery of events to one remote sink without ever blocking the proxy.

`emit` (on the proxy's thread) only encodes the event, masked, and appends the line to a
list. A background thread moves those lines to the sink's on-disk spool, then sends the
oldest spooled batch; the spool advances only once the sink accepted it. A failure (refused,
an error status, a timeout) is retried with exponential backoff and jitter while new events
keep going to the spool, which is bounded: past its limit the oldest events are dropped and
an `events_dropped` event says how many. A restarted proxy with the same sink finds the spool
and delivers what is left, first.

Delivery is at-least-once: a batch the sink accepted but whose answer was lost (a timeout,
a crash before the spool advanced) is sent again. Every event carries a unique `event_id`;
receivers de-duplicate on it.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mcp_defense.events.mask import mask_event
from mcp_defense.events.model import Event, EventsDropped

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
    batch_size: int = 500
    flush_s: float = 0.2  # longest an event waits for its batch to fill
    retry_min_s: float = 0.5
    retry_max_s: float = 60.0
    close_timeout_s: float = 5.0  # at exit: how long to try delivering what is left
    memory_max_events: int = 100_000  # between emit and the spool (a hung sink, a slow disk)
    adopt_every_s: float = 10.0  # how often an idle forwarder looks for spools left behind


def _encode(event: Event) -> bytes:
    from mcp_defense.events.record import event_dict

    d = mask_event(event_dict(event))
    return (
        json.dumps(d, separators=(",", ":"), ensure_ascii=False, default=str).encode(
            "utf-8", "backslashreplace"
        )
        + b"\n"
    )


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
        self._cond = threading.Condition()
        self._mem: list[Event] = []
        self._mem_dropped = 0
        self._unspooled: list[bytes] = []
        self._stop = False
        self._failures = 0
        self._next_try = 0.0
        self.delivered = 0
        self._thread = threading.Thread(
            target=self._run, name=f"mcpd-sink {transport.name[:40]}", daemon=True
        )
        self._thread.start()

    def emit(self, event: Event) -> None:
        # Encoding and masking happen on the worker: here only an append (events are not
        # changed after they are emitted).
        with self._cond:
            self._mem.append(event)
            if len(self._mem) > self.config.memory_max_events:
                del self._mem[0]
                self._mem_dropped += 1
            if len(self._mem) >= self.config.batch_size:
                self._cond.notify()

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

    def _dropped(self, n: int, reason: str) -> None:
        ev = EventsDropped(sink=self.transport.name, dropped=n, reason=reason)
        self._warn(f"mcp-defense: sink {self.transport.name}: dropped {n} event(s): {reason}")
        if self.report is not None:
            self.report(ev)  # to every sink (this one too) and the recording
        else:
            self.spool.append([_encode(ev)])

    def _take(self, timeout: float) -> tuple[list[bytes], int, bool]:
        with self._cond:
            if not self._mem and not self._stop and timeout > 0:
                self._cond.wait(timeout)
            events, self._mem = self._mem, []
            dropped, self._mem_dropped = self._mem_dropped, 0
            stop = self._stop
        return [_encode(e) for e in events], dropped, stop

    def _send_one(self) -> bool:
        """Send the oldest spooled batch (adopted spools first); False on failure."""
        while self.adopted and self.adopted[0].empty:
            self.adopted.pop(0).remove()
        spool = self.adopted[0] if self.adopted else self.spool
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
        spool.commit(cursor)
        self.delivered += len(lines)
        return True

    def _pending(self) -> bool:
        return not self.spool.empty or any(not s.empty for s in self.adopted)

    def _run(self) -> None:
        try:
            while True:
                try:
                    self._loop()
                    return
                except Exception as e:  # noqa: BLE001 - a dead worker would lose events silently
                    self._warn(
                        f"mcp-defense: sink {self.transport.name}: internal error "
                        f"({_brief(e)}); events stay in the spool, retrying"
                    )
                    if self._stop:
                        return
                    time.sleep(min(1.0, self.config.retry_max_s))
        finally:
            self.spool.close()
            for s in self.adopted:
                s.close()

    def _loop(self) -> None:
        deadline: float | None = None
        while True:
            now = time.monotonic()
            if self._pending():
                wait = max(0.0, self._next_try - now) if self._failures else 0.0
            else:
                wait = self.config.flush_s
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
            lines, dropped, stopping = self._take(wait)
            if self._unspooled:  # lines a failing spool disk did not take last time
                lines, self._unspooled = self._unspooled + lines, []
            if stopping and deadline is None:
                deadline = time.monotonic() + self.config.close_timeout_s
            try:
                if lines:
                    n = self.spool.append(lines)
                    if n:
                        self._dropped(n, "spool over its size limit (oldest dropped first)")
                if dropped:
                    self._dropped(dropped, "in-memory queue full while the spool lagged")
            except OSError as e:  # the spool's disk: keep the lines, retry later
                self._unspooled = lines + self._unspooled
                excess = len(self._unspooled) - self.config.memory_max_events
                if excess > 0:
                    del self._unspooled[:excess]
                    with self._cond:
                        self._mem_dropped += excess
                self._warn(f"mcp-defense: sink {self.transport.name}: spool: {e}")
                time.sleep(min(1.0, self.config.flush_s))
                continue
            if self._pending() and time.monotonic() >= self._next_try:
                self._send_one()
            elif time.monotonic() - self._last_adopt >= self.config.adopt_every_s:
                self._last_adopt = time.monotonic()
                self._adopt()
            if deadline is not None and (
                not self._pending() or time.monotonic() >= deadline or self._failures
            ):
                with self._cond:
                    if self._mem:
                        continue
                return

    def close(self) -> None:
        """Stop after a last delivery attempt (bounded by `close_timeout_s`); what is still
        undelivered stays in the spool for the next run."""
        with self._cond:
            if self._stop:
                return
            self._stop = True
            self._cond.notify()
        self._thread.join(self.config.close_timeout_s + 1.0)
        if self._thread.is_alive():  # stuck in a request: the spool keeps what is unconfirmed
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
