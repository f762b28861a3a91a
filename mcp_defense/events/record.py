"""Where runtime events go: a JSONL recording (`--record`) and a live line on a terminal.

The recording is the input of `mcp-defense policy test` and of forensics after a crash, so
each event is written as one line and flushed before the runtime moves on. The live line
(`render_event`) is a pure function of an event so the flight recorder can reuse it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import fields
from typing import IO, Any, Protocol

from rich.console import Console
from rich.text import Text

from mcp_defense.events.model import (
    Event,
    FramingEvent,
    KillEvent,
    PolicyReloaded,
    PolicyReloadFailed,
    ServerExit,
    SessionStart,
    ToolCallEvent,
    ToolResultEvent,
)

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
        spec = _LINE_SPECS[cls] = (prefix, tuple((f',{_encode_str(f.name)}:', f.name) for f in fields(cls)))
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


_STYLE = {
    "allow": "green",
    "alert": "yellow",
    "require_approval": "magenta",
    "deny": "bold red",
    "kill": "bold white on red",
}


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[: 4 * limit]
    try:
        s = json.dumps(value, ensure_ascii=False, default=str) if len(repr(value)) < 4096 else ""
    except (TypeError, ValueError):
        s = ""
    if not s:
        s = repr(value)[: 4 * limit]
    s = printable(s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def render_event(event: Event) -> Text | None:
    """A one-line, human-readable rendering of an event (None: not worth a line)."""
    t = Text()
    ts = event.ts[11:23] if len(event.ts) >= 23 else event.ts
    t.append(f"{ts} ", style="dim")
    if isinstance(event, ToolCallEvent):
        style = _STYLE.get(event.decision, "bold")
        verdict = event.decision.upper()
        if event.approval:
            verdict += f"→{event.approval.upper()}"
        if not event.enforced:
            verdict += " (observe)"
        t.append(f"{verdict:<12}", style=style)
        t.append(f" {printable(event.tool)}", style="bold")
        t.append(f" {_short(event.arguments)}")
        if event.rule:
            t.append(f"  [{printable(event.rule)}]", style="cyan")
        if event.reason and event.decision != "allow":
            t.append(f" {printable(event.reason)}", style="italic")
        t.append(f"  {event.correlation_id}", style="dim")
        return t
    if isinstance(event, ToolResultEvent):
        return None  # one line per decision; results would double the noise
    if isinstance(event, FramingEvent):
        t.append("REFUSED     ", style="bold red")
        t.append(f" {event.direction}: {printable(event.reason)}")
        if event.request_id is not None:
            t.append(f"  id={event.request_id!r}", style="dim")
        return t
    if isinstance(event, KillEvent):
        t.append("KILL        ", style=_STYLE["kill"])
        t.append(f" server pid {event.server_pid} [{printable(event.rule)}] {printable(event.reason)}")
        return t
    if isinstance(event, SessionStart):
        t.append("SESSION     ", style="bold blue")
        mode = " observe" if event.observe else ""
        t.append(
            f" {printable(event.agent_id)} → {printable(' '.join(event.server_command))} "
            f"(archetype {event.archetype}, policy {event.policy_version}{mode})"
        )
        return t
    if isinstance(event, ServerExit):
        t.append("EXIT        ", style="bold blue")
        t.append(f" server pid {event.server_pid} exited {event.returncode}")
        if event.pending_requests:
            t.append(f", {event.pending_requests} pending request(s) answered with errors")
        return t
    if isinstance(event, PolicyReloaded):
        t.append("RELOAD      ", style="bold blue")
        t.append(f" policy {event.old_version} → {event.new_version}")
        return t
    if isinstance(event, PolicyReloadFailed):
        t.append("RELOAD FAIL ", style="bold red")
        t.append(f" keeping {event.version_in_force}: {printable('; '.join(event.diagnostics)[:200])}")
        return t
    return None


class LiveRenderer:
    """Prints `render_event` lines to a terminal (stderr by default)."""

    def __init__(self, file: IO[str] | None = None) -> None:
        self._console = Console(file=file or sys.stderr, highlight=False, soft_wrap=True)
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        text = render_event(event)
        if text is not None:
            with self._lock:
                self._console.print(text)

    def close(self) -> None:
        pass


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
    """The standard sinks: `--record FILE`, plus live lines when stderr is a terminal."""
    sinks: list[EventSink] = []
    if record_path:
        sinks.append(JsonlWriter(record_path))
    if live is None:
        live = sys.stderr.isatty()
    if live:
        sinks.append(LiveRenderer())
    return Recorder(sinks)
