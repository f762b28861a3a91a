"""`--audit-log FILE`: a tamper-evident, append-only log of every event.

Each line is the event (masked as for sinks) with two more fields: `audit_seq`, its 1-based
position, and `audit_prev`, the SHA-256 of the previous line's bytes (64 zeros for the
first). Editing, deleting, inserting or reordering a line breaks the chain at the first line
touched; a torn last line is not valid JSON. Cutting whole lines off the end, or editing the
last line, leaves a shorter valid chain: that is why the chain head (line count and hash of
the last line) is also sent to the sinks as `audit_head` events, and `audit verify --head`
checks against it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_defense.events.mask import mask_event
from mcp_defense.events.model import AuditHead, Event
from mcp_defense.events.record import JsonlWriter, event_dict

GENESIS = "0" * 64
HEAD_EVERY = 100  # lines between two audit_head events to the sinks


def line_hash(line: bytes) -> str:
    """SHA-256 of a line without its newline."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def _last_line(path: str) -> tuple[int, bytes]:
    """(number of lines, last whole line) of an existing log, to continue its chain."""
    try:
        with open(path, "rb") as fh:
            count, last = 0, b""
            for line in fh:
                if line.endswith(b"\n"):
                    count, last = count + 1, line
            return count, last
    except FileNotFoundError:
        return 0, b""


class AuditLog(JsonlWriter):
    """A recording whose lines form a hash chain; `forward` receives the `audit_head`s."""

    def __init__(
        self,
        path: str,
        *,
        forward: Callable[[Event], None] | None = None,
        head_every: int = HEAD_EVERY,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        count, last = _last_line(path)
        self.seq = count
        self.prev = line_hash(last) if count else GENESIS
        if count:
            try:
                self.seq = int(json.loads(last)["audit_seq"])
            except (ValueError, KeyError, TypeError):
                pass  # `audit verify` will name it; keep appending from the count
        self.forward = forward
        self.head_every = head_every
        super().__init__(path, warn=warn)

    def _line(self, event: Event) -> bytes:
        d: dict[str, Any] = {"audit_seq": self.seq + 1, "audit_prev": self.prev}
        d.update(mask_event(event_dict(event)))
        return (
            json.dumps(d, separators=(",", ":"), ensure_ascii=False, default=str).encode(
                "utf-8", "backslashreplace"
            )
            + b"\n"
        )

    def _state(self) -> Any:
        return (self.seq, self.prev)

    def _restore(self, state: Any) -> None:
        self.seq, self.prev = state

    def _written(self, data: bytes) -> None:
        self.seq += 1
        self.prev = line_hash(data)
        if self.forward is not None and self.seq % self.head_every == 0:
            self.forward(self.head())

    def head(self) -> AuditHead:
        return AuditHead(path=os.path.abspath(self.path), lines=self.seq, hash=self.prev)

    def close(self) -> None:
        if self.forward is not None and self.seq:
            self.forward(self.head())
        super().close()


@dataclass(frozen=True, slots=True)
class Verdict:
    intact: bool
    lines: int  # lines checked (whole lines in the file)
    head: str  # hash of the last line
    bad_line: int = 0  # first line found wrong (1-based), 0 when intact
    problem: str = ""  # edited | deleted | reordered | inserted | truncated | not_json | head
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "lines": self.lines,
            "head": self.head,
            "bad_line": self.bad_line or None,
            "problem": self.problem or None,
            "message": self.message,
        }


def verify(path: Path, *, head: str | None = None, lines: int | None = None) -> Verdict:
    """Check the chain of an audit log; name the first line that breaks it.

    `head`/`lines` (from the last `audit_head` a sink received) also catch a log cut short
    or whose last line was edited."""
    raw = path.read_bytes()
    rows = raw.split(b"\n")
    torn = rows.pop() if rows else b""  # bytes after the last newline: a torn line
    seqs: list[int | None] = []
    for row in rows:
        try:
            s = json.loads(row).get("audit_seq")
            seqs.append(s if isinstance(s, int) and not isinstance(s, bool) else None)
        except (ValueError, AttributeError):
            seqs.append(None)
    prev = GENESIS
    for i, row in enumerate(rows, 1):
        seq = seqs[i - 1]
        if seq is None:
            return _bad(i, prev, "not_json", f"line {i} is not an audit entry (edited)")
        try:
            recorded = json.loads(row).get("audit_prev")
        except ValueError:  # pragma: no cover - seqs said it parses
            recorded = None
        if seq != i:
            if seq > i and i not in seqs[i:]:
                gone = f"line {i}" if seq == i + 1 else f"lines {i}–{seq - 1}"
                return _bad(i, prev, "deleted", f"{gone} deleted (line {i} holds entry {seq})")
            if seq < i and seqs.count(seq) > 1:
                return _bad(i, prev, "inserted", f"line {i} repeats entry {seq} (inserted)")
            return _bad(i, prev, "reordered", f"line {i} holds entry {seq}: lines reordered")
        if recorded != prev:
            if i == 1:
                return _bad(1, prev, "edited", "line 1 does not start the chain (edited)")
            return _bad(
                i - 1, prev, "edited", f"line {i - 1} was edited (line {i} holds another hash)"
            )
        prev = line_hash(row)
    n = len(rows)
    if torn:
        return _bad(n + 1, prev, "truncated", f"line {n + 1} is torn (truncated mid-line)")
    if lines is not None and n < lines:
        return _bad(
            n + 1, prev, "truncated", f"log truncated: {n} line(s), the chain head says {lines}"
        )
    if head is not None:
        expected_n = lines if lines is not None else n
        if n == expected_n and prev != head:
            return _bad(n, prev, "edited", f"line {n} does not match the chain head (edited)")
    return Verdict(True, n, prev, message=f"intact: {n} line(s), head {prev}")


def _bad(line: int, head: str, problem: str, message: str) -> Verdict:
    return Verdict(False, line - 1, head, line, problem, message)
