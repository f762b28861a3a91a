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
from collections.abc import Iterable
from dataclasses import fields
from typing import Any, Protocol

from mcp_defense.events.model import Event

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
if json.encoder.c_make_encoder is not None:
    # JSONEncoder.encode builds a new C encoder per call (~1 µs); keep one. No circularity
    # markers: event values come from parsed JSON, which cannot be cyclic.
    _c_encoder = json.encoder.c_make_encoder(
        None, str, _encode_str, None, ":", ",", False, False, True
    )

    def _encode_value(v: Any) -> str:
        return "".join(_c_encoder(v, 0))
else:  # pragma: no cover - CPython without the _json accelerator
    _encode_value = _encode
_LINE_SPECS: dict[type[Event], tuple[str, tuple[tuple[str, str], ...]]] = {}


def _line_spec(cls: type[Event]) -> tuple[str, tuple[tuple[str, str], ...]]:
    spec = _LINE_SPECS.get(cls)
    if spec is None:
        prefix = '{"type":' + _encode_str(cls.type)
        spec = _LINE_SPECS[cls] = (
            prefix,
            tuple((f",{_encode_str(f.name)}:", f.name) for f in fields(cls)),
        )
    return spec


def event_line(event: Event) -> bytes:
    """One JSONL line, byte-identical to `json.dumps(event.to_dict(), separators=(",", ":"),
    ensure_ascii=False)`, built field by field from the dataclass (so it cannot drift from
    the model) at a fraction of the cost; lone surrogates become `\\udXXX` escapes."""
    prefix, specs = _line_spec(type(event))
    parts = [prefix]
    append = parts.append
    for key, name in specs:
        append(key)
        v = getattr(event, name)
        t = type(v)
        if t is str:
            append(_encode_str(v))
        elif v is None:
            append("null")
        elif t is bool:
            append("true" if v else "false")
        elif t is int:
            append(int.__repr__(v))
        elif (t is list or t is dict) and not v:
            append("[]" if t is list else "{}")
        else:
            append(_encode_value(v))
    append("}\n")
    return "".join(parts).encode("utf-8", "backslashreplace")


_ts_cache: list[Any] = [-1, ""]


def now_iso_fast() -> str:
    """`events.model.now_iso()` (same format) without datetime objects: the runtimes stamp
    every event, and this is 5x cheaper."""
    t = time.time()
    sec = int(t)
    if sec != _ts_cache[0]:
        _ts_cache[0] = sec
        _ts_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_ts_cache[1]}.{int((t - sec) * 1e6):06d}Z"


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


class JsonlWriter:
    """Appends one event per line and flushes each, so a killed proxy loses nothing written.

    Opened in append mode: recording several sessions into one file is normal (each starts
    with a `session_start` event), and an existing recording is never truncated.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        data = event_line(event)
        with self._lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def printable(text: str) -> str:
    """Escape what a terminal would interpret (ESC sequences, C1 controls, bidi overrides,
    newlines): tool names, reasons and arguments come from an untrusted agent or server, and
    must not be able to repaint the operator's screen or a prompt."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Recorder:
    """Fans events out to sinks. `active` is False with no sinks, so runtimes can skip
    building events entirely on the hot path."""

    def __init__(self, sinks: Iterable[EventSink] = ()) -> None:
        self.sinks: list[EventSink] = list(sinks)

    @property
    def active(self) -> bool:
        return bool(self.sinks)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except OSError as e:  # a full disk must not take the proxy down mid-call
                print(f"mcp-defense: cannot record event: {e}", file=sys.stderr)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def open_recorder(record_path: str | None, live: bool | None = None) -> Recorder:
    """The standard sinks: `--record FILE`, plus the flight recorder's timeline when stderr
    is a terminal."""
    sinks: list[EventSink] = []
    if record_path:
        sinks.append(JsonlWriter(record_path))
    if live is None:
        live = sys.stderr.isatty()
    if live:
        from mcp_defense.events.recorder import FlightRecorder  # it imports this module

        sinks.append(FlightRecorder())
    return Recorder(sinks)
