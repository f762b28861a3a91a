"""The flight recorder: a timeline of every call, its flows, orphans and kills.

Used live (a sink on a terminal) and after the fact (`mcp-defense record view FILE`), so a
recording reads the same as the session did. Rendering is a pure function of events.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.text import Text

from mcp_defense.events.model import (
    Event,
    EventFormatError,
    EventsDropped,
    FlowEvent,
    FramingEvent,
    KillEvent,
    PolicyReloaded,
    PolicyReloadFailed,
    RecordingGap,
    ServerExit,
    SessionStart,
    ToolCallEvent,
    event_from_dict,
    printable,
)

STYLE = {
    "allow": "green",
    "alert": "yellow",
    "require_approval": "magenta",
    "deny": "bold red",
    "kill": "bold white on red",
}
LABEL = {
    "allow": "ALLOW",
    "alert": "ALERT",
    "require_approval": "APPROVAL",
    "deny": "DENY",
    "kill": "KILL",
}
_KEY_ARGS = (
    "path",
    "url",
    "uri",
    "command",
    "cmd",
    "file",
    "source",
    "destination",
    "query",
    "code",
    "paths",
)


def key_argument(arguments: Any, limit: int = 60) -> str:
    """The argument a human wants to see first (a path, URL or command), shortened."""
    value: Any = None
    if isinstance(arguments, dict):
        lowered = {str(k).lower(): v for k, v in arguments.items()}
        for k in _KEY_ARGS:
            if k in lowered:
                value = lowered[k]
                break
        if value is None:
            value = next((v for v in arguments.values() if isinstance(v, str)), None)
        if value is None and arguments:
            value = json.dumps(arguments, ensure_ascii=False, default=str)
    elif arguments is not None:
        value = json.dumps(arguments, ensure_ascii=False, default=str)
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    text = printable("" if value is None else str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ts(event: Event) -> str:
    ts = printable(str(event.ts))
    return ts[11:23] if len(ts) >= 23 else ts


def _p(value: Any) -> str:
    """Any recorded value as terminal-safe text: a recording may come from anywhere."""
    return printable(value if isinstance(value, str) else str(value))


def _ids(ids: Any) -> str:
    return ", ".join(_p(i) for i in ids) if isinstance(ids, list) else _p(ids)


def _lead(text: str) -> Text:
    """A dim prefix (time stamp, indent, marker). Appended, not `Text(style=)`, which would dim
    the whole line."""
    t = Text()
    t.append(text, style="dim")
    return t


def _tagged(ts: str, tag: str, style: str) -> Text:
    """A timeline line's opening: the time stamp and a fixed-width tag (SESSION, KILLED…)."""
    t = _lead(f"{ts}  ")
    t.append(f"{tag:<9}", style=style)
    return t


def _flow_text(f: FlowEvent, indent: str) -> Text:
    t = Text(indent)
    t.append(
        f"└ flow {_p(f.protocol)} {_p(f.src_ip)}:{_p(f.src_port)} → "
        f"{_p(f.dst_ip)}:{_p(f.dst_port)}",
        style="bold",
    )
    who = f" pid {_p(f.pid)}" if f.pid else ""
    if f.binary:
        who += f" {_p(f.binary).rsplit('/', 1)[-1]}"
    t.append(who, style="dim")
    t.append("  ")
    verdict = _p(f.verdict)
    t.append(LABEL.get(verdict, verdict.upper()), style=STYLE.get(verdict, "bold"))
    if f.rule:
        t.append(f" {_p(f.rule)}", style="cyan")
    if f.reason and verdict != "allow":
        t.append(f": {_p(f.reason)}", style="italic")
    return t


@dataclass
class Summary:
    decisions: Counter[str] = field(default_factory=Counter)
    flows: int = 0
    orphans: int = 0
    kills: int = 0
    refused: int = 0
    reloads: int = 0

    def add(self, e: Event) -> None:
        if isinstance(e, ToolCallEvent):
            self.decisions[e.decision] += 1
        elif isinstance(e, FlowEvent):
            self.flows += 1
            self.orphans += bool(e.orphan)
        elif isinstance(e, KillEvent):
            self.kills += 1
        elif isinstance(e, FramingEvent):
            self.refused += 1
        elif isinstance(e, PolicyReloaded):
            self.reloads += 1

    def text(self) -> Text:
        t = _lead("── ")
        total = sum(self.decisions.values())
        t.append(f"{total} call(s)", style="bold")
        parts = [
            (LABEL[k].lower(), self.decisions[k], STYLE[k]) for k in LABEL if self.decisions[k]
        ]
        if parts:
            t.append(": ")
            for i, (label, n, style) in enumerate(parts):
                if i:
                    t.append(", ")
                t.append(f"{n} {label}", style=style)
        t.append(f" · {self.flows} flow(s), {self.orphans} orphan(s) · {self.kills} kill(s)")
        if self.refused:
            t.append(f" · {self.refused} refused message(s)")
        if self.reloads:
            t.append(f" · {self.reloads} policy reload(s)")
        return t


def render(event: Event) -> list[Text]:
    """Timeline lines for one event (empty: nothing worth a line)."""
    ts = _ts(event)
    if isinstance(event, ToolCallEvent):
        decision = _p(event.decision)
        label = LABEL.get(decision, decision.upper())
        if event.approval:  # require_approval, then the human's (or the default) answer
            label = _p(event.approval).upper()[:9]
        t = _tagged(ts, label, STYLE.get(decision, "bold"))
        t.append(f" {_p(event.correlation_id):<22}", style="dim")
        t.append(f" {_p(event.archetype):<14}", style="cyan")
        t.append(f" {_p(event.tool):<16}", style="bold")
        t.append(f" {key_argument(event.arguments)}")
        if not event.enforced:
            t.append("  (observed)", style="dim")
        lines = [t]
        if decision != "allow" or event.rule:
            r = _lead(" " * 14 + "↳ ")
            r.append(_p(event.rule or "default"), style="cyan")
            r.append(f": {_p(event.reason)}", style="italic")
            lines.append(r)
        return lines
    if isinstance(event, FlowEvent):
        if event.orphan:
            t = _tagged(ts, "ORPHAN", "bold yellow")
            return [t + _flow_text(event, "")]
        t = _flow_text(event, " " * 14)
        t.append(f"  ({_ids(event.correlation_ids)})", style="dim")
        return [t]
    if isinstance(event, KillEvent):
        t = _tagged(ts, "KILLED", STYLE["kill"])
        others = len(event.killed_pids) - 1 if isinstance(event.killed_pids, list) else 0
        tree = f" (+{others} process(es) of its tree)" if others > 0 else ""
        t.append(f" server pid {_p(event.server_pid)}{tree} · {_p(event.rule)}: {_p(event.reason)}")
        if event.correlation_ids:
            t.append(f"  ({_ids(event.correlation_ids)})", style="dim")
        lines = [t]
        if event.survivors:
            lines.append(
                Text(
                    " " * 14 + f"↳ still alive after SIGKILL: {_ids(event.survivors)}",
                    style="bold red",
                )
            )
        return lines
    if isinstance(event, SessionStart):
        t = _tagged(ts, "SESSION", "bold blue")
        command = (
            " ".join(_p(c) for c in event.server_command)
            if isinstance(event.server_command, list)
            else _p(event.server_command)
        )
        t.append(
            f" {_p(event.agent_id)} → {command}  archetype {_p(event.archetype)} · "
            f"policy {_p(event.policy_version)}" + (" · observe" if event.observe else "")
        )
        return [t]
    if isinstance(event, FramingEvent):
        t = _tagged(ts, "REFUSED", "bold red")
        t.append(f" {_p(event.direction)}: {_p(event.reason)}")
        return [t]
    if isinstance(event, ServerExit):
        t = _tagged(ts, "EXIT", "bold blue")
        t.append(f" server pid {_p(event.server_pid)} exited {_p(event.returncode)}")
        if event.pending_requests:
            t.append(f", {_p(event.pending_requests)} pending request(s) answered with errors")
        return [t]
    if isinstance(event, PolicyReloaded):
        t = _tagged(ts, "RELOAD", "bold blue")
        t.append(f" policy {_p(event.old_version)} → {_p(event.new_version)}")
        return [t]
    if isinstance(event, PolicyReloadFailed):
        t = _tagged(ts, "RELOAD ✗", "bold red")
        t.append(f" keeping {_p(event.version_in_force)}")
        if isinstance(event.diagnostics, list) and event.diagnostics:
            t.append(f": {_p('; '.join(map(str, event.diagnostics)))[:200]}", style="italic")
        return [t]
    if isinstance(event, RecordingGap):
        t = _tagged(ts, "GAP", "bold red")
        t.append(
            f" {_p(event.lost)} event(s) not recorded since {_p(event.since)}: {_p(event.error)}"
        )
        return [t]
    if isinstance(event, EventsDropped):
        t = _tagged(ts, "DROPPED", "bold red")
        t.append(f" {_p(event.dropped)} event(s) for {_p(event.sink)}: {_p(event.reason)}")
        return [t]
    return []


def header() -> Text:
    return Text(
        f"{'time':<14}{'decision':<10}{'correlation id':<23}{'archetype':<15}"
        f"{'tool':<17}key argument",
        style="bold underline",
    )


class FlightRecorder:
    """A live sink: prints the timeline as events arrive and a summary on close."""

    def __init__(self, file: IO[str] | None = None, *, show_header: bool = True) -> None:
        self.console = Console(file=file or sys.stderr, highlight=False, soft_wrap=True)
        self.summary = Summary()
        self._lock = threading.Lock()
        self._header = show_header
        self._seen = False  # any event yet

    def emit(self, event: Event) -> None:
        with self._lock:
            self._seen = True
            if self._header:
                self.console.print(header())
                self._header = False
            self.summary.add(event)
            for line in render(event):
                self.console.print(line)

    def close(self) -> None:
        with self._lock:
            if self._seen:  # a summary only under a timeline that was shown
                self.console.print(self.summary.text())


def read_recording(path: Path) -> Iterator[tuple[int, Event | EventFormatError]]:
    """(line number, event or the error for that line)."""
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                yield n, event_from_dict(json.loads(raw))
            except (ValueError, EventFormatError) as e:
                yield n, EventFormatError(str(e))


def _joined(e: Event) -> bool:
    return (
        isinstance(e, FlowEvent)
        and not e.orphan
        and isinstance(e.correlation_ids, list)
        and bool(e.correlation_ids)
    )


def grouped(events: Iterable[Event]) -> list[Event]:
    """Order for viewing: each call followed by the flows it joined, in time order otherwise.

    A flow inside the window of several calls is listed (with all their ids) under the most
    recent of them that started before it: the likeliest cause, and where a reader looks."""
    events = list(events)
    started: dict[str, int] = {}  # call id -> position of its tool_call
    by_call: dict[str, list[FlowEvent]] = {}
    for i, e in enumerate(events):
        if isinstance(e, ToolCallEvent):
            started.setdefault(e.correlation_id, i)
        elif _joined(e):
            ids = [str(c) for c in e.correlation_ids]  # type: ignore[attr-defined]
            known = [c for c in ids if started.get(c, i) < i]
            home = max(known, key=started.__getitem__) if known else ids[-1]
            by_call.setdefault(home, []).append(e)  # type: ignore[arg-type]
    out: list[Event] = []
    for e in events:
        if _joined(e):
            continue  # placed under its call
        out.append(e)
        if isinstance(e, ToolCallEvent):
            out.extend(by_call.pop(e.correlation_id, []))
    for rest in by_call.values():  # flows whose call is not in this recording
        out.extend(rest)
    return out
