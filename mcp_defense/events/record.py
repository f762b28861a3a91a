"""Where runtime events go: a JSONL recording (`--record`) and, on a terminal, the flight
recorder's live timeline (`events/recorder.py`, the one renderer of events for humans).

The recording is the input of `mcp-defense policy test`, of `record view` and of forensics
after a crash, so each event is written as one line and flushed before the runtime moves on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any, Protocol

from mcp_defense.events.model import Event, RecordingGap, printable

__all__ = ["JsonlWriter", "Recorder", "event_line", "open_recorder", "printable"]

_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}


def event_dict(event: Event) -> dict[str, Any]:
    """Shallow `Event.to_dict`: same keys and order, without deep-copying big arguments."""
    cls = type(event)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    d: dict[str, Any] = {"type": cls.type}
    for name in names:
        d[name] = getattr(event, name)
    return d


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_encode_str = json.encoder.encode_basestring  # the C string escaper json itself uses
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
if _c_make_encoder is not None:
    # JSONEncoder.encode builds a new C encoder per call (~1 µs); keep one. No circularity
    # markers: event values come from parsed JSON, which cannot be cyclic.
    _c_encoder = _c_make_encoder(None, str, _encode_str, None, ":", ",", False, False, True)

    def _encode_value(v: Any) -> str:
        return "".join(_c_encoder(v, 0))
else:  # pragma: no cover - CPython without the _json accelerator
    _encode_value = _encode  # type: ignore[assignment]


def _value(v: Any) -> str:
    """Any field value but a string (strings are escaped inline by the compiled encoders)."""
    t = type(v)
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return int.__repr__(v)
    if (t is list or t is dict) and not v:
        return "[]" if t is list else "{}"
    return _encode_value(v)


_LINE_ENCODERS: dict[type[Event], Callable[[Event], bytes]] = {}


def _line_encoder(cls: type[Event]) -> Callable[[Event], bytes]:
    """A function writing `cls`'s line in one expression, generated from its fields (as
    dataclasses generate `__init__`), so it cannot drift from the model: a third faster than
    a loop over the fields, and every event goes through it (recording, sinks)."""
    parts: list[str] = []
    for i, f in enumerate(fields(cls)):
        head = '{"type":' + _encode_str(cls.type) + "," if i == 0 else ","
        parts.append(repr(head + _encode_str(f.name) + ":"))
        parts.append(f"(_s(v) if (v := e.{f.name}).__class__ is _str else _o(v))")
    parts.append(repr("}\n"))
    src = (
        "def line(e):\n"
        f"    return ''.join(({', '.join(parts)},)).encode('utf-8', 'backslashreplace')\n"
    )
    namespace: dict[str, Any] = {"_s": _encode_str, "_o": _value, "_str": str}
    exec(src, namespace)  # noqa: S102 - source built from the dataclass's own field names
    fn: Callable[[Event], bytes] = namespace["line"]
    _LINE_ENCODERS[cls] = fn
    return fn


def event_line(event: Event) -> bytes:
    """One JSONL line, byte-identical to `json.dumps(event.to_dict(), separators=(",", ":"),
    ensure_ascii=False)`, built field by field from the dataclass (so it cannot drift from
    the model) at a fraction of the cost; lone surrogates become `\\udXXX` escapes."""
    cls = type(event)
    fn = _LINE_ENCODERS.get(cls)
    if fn is None:
        fn = _line_encoder(cls)
    return fn(event)


_ts_second: list[tuple[int, str]] = [(-1, "")]  # (second, its formatted prefix), one object
_time = time.time


def now_iso_fast() -> str:
    """`events.model.now_iso()` (same format) without datetime objects: the runtimes stamp
    every event, and this is 6x cheaper."""
    return iso_fast(_time())


def iso_fast(t: float) -> str:
    """`t` (seconds since the epoch) as `now_iso_fast` writes it. Thread-safe: the cached
    second and its text are read and replaced as one tuple."""
    sec = int(t)
    cached = _ts_second[0]
    if sec != cached[0]:
        cached = (sec, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec)))
        _ts_second[0] = cached
    return "%s%06dZ" % (cached[1], (t - sec) * 1e6)  # noqa: UP031 - cheaper than an f-string


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


REOPEN_CHECK_S = 0.01  # at most this long of events go to a recording after it was deleted


class JsonlWriter:
    """Appends one event per line, each written before `emit` returns, so a killed proxy
    loses nothing written.

    Opened in append mode: recording several sessions into one file is normal (each starts
    with a `session_start` event), and an existing recording is never truncated. Under faults
    (issue: a full disk tore lines and spliced the next event onto them; a deleted or rotated
    file was written on into a deleted inode):

    * a line is written whole or not at all (a short write is truncated away);
    * a failure warns once per outage on stderr, counts the events lost, and the first
      successful write is preceded by a `recording_gap` event saying how many;
    * a recording deleted or renamed away (logrotate) is reopened at its path (checked at
      most every `check_every_s`: after a rename the events of that window are in the
      renamed file; after a delete, they are gone with it).
    """

    def __init__(
        self,
        path: str,
        *,
        warn: Callable[[str], None] | None = None,
        check_every_s: float = REOPEN_CHECK_S,
    ) -> None:
        self.path = path
        self._warn = warn or _stderr
        self._check_every = check_every_s
        self._next_check = 0.0
        self._lock = threading.Lock()
        self._fd = -1
        self._ident: tuple[int, int] = (0, 0)
        self._lost = 0
        self._since = ""
        self._error = ""
        self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(fd)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._ident = fd, (st.st_dev, st.st_ino)

    def _check_path(self) -> None:
        """Reopen when the path no longer names the file we hold (deleted, rotated). A stat
        is a third of an event's cost, so under load it runs every `check_every_s`."""
        if self._check_every:
            now = time.monotonic()
            if now < self._next_check:
                return
            self._next_check = now + self._check_every
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._ident:
                return
        except FileNotFoundError:
            pass
        self._open()

    def _written(self, data: bytes) -> None:
        """Hook: `data` is now on disk (the audit log advances its hash chain here)."""

    def _write_line(self, data: bytes) -> None:
        """All of `data` or none of it: a short write followed by an error is cut back."""
        self._write_all_or_nothing(data)
        self._written(data)

    def _state(self) -> Any:
        """Hook: what `_written` changes, to undo when a write it anticipated fails."""
        return None

    def _restore(self, state: Any) -> None:
        pass

    def _write_all_or_nothing(self, data: bytes) -> None:
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:] if written else data)
        except OSError:
            if written:
                try:
                    os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
                except OSError:
                    pass
            raise

    def _resume(self, event: Event | None = None) -> bool:
        """In an outage: write the gap event (and `event`) as one write; True when it
        worked, so an outage ends only when a whole event fits again."""
        gap = RecordingGap(lost=self._lost, since=self._since, error=self._error, path=self.path)
        state = self._state()
        try:
            self._check_path()
            first = self._line(gap)
            self._written(first)
            data = first + (self._line(event) if event is not None else b"")
            self._write_all_or_nothing(data)
        except OSError:
            self._restore(state)
            return False
        if event is not None:
            self._written(data[len(first) :])
        self._warn(
            f"mcp-defense: recording {self.path} is written again; "
            f"{self._lost} event(s) were lost (recorded as recording_gap)"
        )
        self._lost = 0
        return True

    def _line(self, event: Event) -> bytes:
        return event_line(event)

    def emit(self, event: Event) -> None:
        with self._lock:
            if self._fd < 0:
                return
            try:
                if self._lost:
                    if not self._resume(event):
                        raise OSError(self._error)
                    return
                self._check_path()
                self._write_line(self._line(event))
            except OSError as e:
                if not self._lost:
                    self._since = event.ts
                    self._error = e.strerror or str(e)
                    self._warn(
                        f"mcp-defense: cannot write recording {self.path}: {self._error}; "
                        "events are lost until it can be written (one warning per outage)"
                    )
                self._lost += 1

    @property
    def writable(self) -> bool:
        """False while events are being lost (`--record-required` checks it before each call).
        It turns True when an event could be written again (the denied calls' own events
        are the probes)."""
        return not self._lost

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


RECORD_REQUIRED_RULE = "record_required"
RECORD_REQUIRED_REASON = (
    "the recording cannot be written and --record-required is set: calls are denied until it can"
)


_build_lock = threading.Lock()


class LazyEvent:
    """An event built when a background sink first needs it, off the call's path. Built once:
    every sink gets the same event (one `event_id`). `build` must read only values that do
    not change afterwards (the call, its decision, numbers and strings taken at emit time)."""

    __slots__ = ("_build", "_event")

    def __init__(self, build: Callable[[], Event]) -> None:
        self._build: Callable[[], Event] | None = build
        self._event: Event | None = None

    def __call__(self) -> Event:
        event = self._event
        if event is None:
            with _build_lock:  # (only the sinks' threads come here: no contention with calls)
                event = self._event
                if event is None:
                    build, self._build = self._build, None
                    assert build is not None
                    event = self._event = build()
        return event


class Recorder:
    """Fans events out to sinks. `active` is False with no sinks, so runtimes can skip
    building events entirely on the hot path. `writable` is False while a sink in `required`
    cannot write (`--record-required`: the runtime denies calls then, failing closed).

    `emit_later` is `emit` for the events of every call: when each sink delivers from a
    background thread (`deferred`, the SIEM forwarders), the event is built there, not on
    the call's path; a recording, the audit log or the timeline get it at once, as with
    `emit`. Measured with benchmarks/bench_sinks.py, building them on the call's path was
    most of what a sink cost a call."""

    def __init__(self, sinks: Iterable[EventSink] = (), *, required: Iterable[Any] = ()) -> None:
        self.sinks: tuple[EventSink, ...] = tuple(sinks)  # fixed: `_deferred` is derived once
        self.required: list[Any] = list(required)
        self._deferred = bool(self.sinks) and all(
            callable(getattr(s, "emit_lazy", None)) for s in self.sinks
        )

    @property
    def active(self) -> bool:
        return bool(self.sinks)

    @property
    def writable(self) -> bool:
        for sink in self.required:
            if not sink.writable:
                return False
        return True

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except OSError as e:  # a full disk must not take the proxy down mid-call
                print(f"mcp-defense: cannot record event: {e}", file=sys.stderr)

    def emit_later(self, build: Callable[[], Event]) -> None:
        """`emit(build())`, where the sinks allow, built later by the sinks' threads."""
        if not self._deferred:
            self.emit(build())
            return
        lazy = LazyEvent(build)
        for sink in self.sinks:
            sink.emit_lazy(lazy)  # type: ignore[attr-defined]

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def open_recorder(
    record_path: str | None,
    live: bool | None = None,
    *,
    extra: Iterable[EventSink] = (),
    record_required: bool = False,
) -> Recorder:
    """The standard sinks: `--record FILE`, plus the flight recorder's timeline when stderr
    is a terminal, plus `extra` (audit log, SIEM forwarders from `events/sinks`)."""
    sinks: list[EventSink] = []
    required: list[Any] = []
    if record_path:
        writer = JsonlWriter(record_path)
        sinks.append(writer)
        if record_required:
            required.append(writer)
    sinks.extend(extra)
    if record_required:
        required.extend(s for s in extra if hasattr(s, "writable"))
    if live is None:
        live = sys.stderr.isatty()
    if live:
        from mcp_defense.events.recorder import FlightRecorder  # rich: only on a terminal

        sinks.append(FlightRecorder())
    return Recorder(sinks, required=required)
