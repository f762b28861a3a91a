"""Human approval of `require_approval` decisions, asked on the controlling terminal.

The proxy's stdin/stdout belong to the agent, so the only channel to the human is
`/dev/tty`. Every path that is not an explicit "allow" is a rejection: no terminal, a
timeout, end of input, an error — fail closed, and the reason says which.
"""

from __future__ import annotations

import json
import os
import select
import termios
import threading
import time
import tty
from dataclasses import dataclass
from typing import Any

from mcp_defense.events.record import printable
from mcp_defense.policy.facts import Decision

DEFAULT_TIMEOUT_S = 60.0

_KEYS = {
    "a": ("allow", False),
    "y": ("allow", False),
    "d": ("deny", False),
    "n": ("deny", False),
    "A": ("allow", True),
    "D": ("deny", True),
}


@dataclass(frozen=True, slots=True)
class ApprovalResult:
    approved: bool
    reason: str
    remembered: bool = False  # answered from an earlier "for this session" choice


class Approver:
    """Asks once per call, remembers "for this session" answers per (rule, tool)."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, tty_path: str = "/dev/tty") -> None:
        self.timeout_s = timeout_s
        self.tty_path = tty_path
        self._session: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()  # one prompt at a time on one terminal

    def ask(
        self, *, tool: str, arguments: Any, decision: Decision, correlation_id: str
    ) -> ApprovalResult:
        key = (decision.rule, tool)
        with self._lock:
            remembered = self._session.get(key)
            if remembered is not None:
                verdict = "allowed" if remembered else "denied"
                return ApprovalResult(
                    remembered, f"{verdict} for this session: {decision.reason}", True
                )
            try:
                fd = os.open(self.tty_path, os.O_RDWR | os.O_NOCTTY)
            except OSError as e:
                return ApprovalResult(
                    False,
                    f"approval required but no terminal to ask ({e.strerror}): {decision.reason}",
                )
            try:
                return self._prompt(fd, key, tool, arguments, decision, correlation_id)
            except OSError as e:
                return ApprovalResult(False, f"approval prompt failed ({e}): {decision.reason}")
            finally:
                os.close(fd)

    def _prompt(
        self,
        fd: int,
        key: tuple[str, str],
        tool: str,
        arguments: Any,
        decision: Decision,
        correlation_id: str,
    ) -> ApprovalResult:
        args = _preview(arguments)  # ASCII JSON: control characters arrive escaped
        text = (
            f"\r\n\x1b[1;33mmcp-defense: approval required\x1b[0m [{printable(decision.rule)}] "
            f"{printable(decision.reason)}\r\n  tool {printable(tool)}  {args}\r\n  ({correlation_id})\r\n"
            f"  [a] allow once  [d] deny  [A] allow for session  [D] deny for session"
            f"  (auto-deny in {self.timeout_s:g}s): "
        )
        is_tty = os.isatty(fd)
        saved = termios.tcgetattr(fd) if is_tty else None
        try:
            if is_tty:
                tty.setcbreak(fd)
                termios.tcflush(fd, termios.TCIFLUSH)  # keys typed before the prompt don't count
            _write_all(fd, text.encode("utf-8", "replace"))
            deadline = time.monotonic() + self.timeout_s
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    _write_all(fd, b"timeout -> denied\r\n")
                    return ApprovalResult(
                        False, f"approval timed out after {self.timeout_s:g}s: {decision.reason}"
                    )
                ready, _, _ = select.select([fd], [], [], left)
                if not ready:
                    continue
                data = os.read(fd, 64)
                if not data:
                    return ApprovalResult(
                        False, f"terminal closed before approval: {decision.reason}"
                    )
                for ch in data.decode("utf-8", "replace"):
                    choice = _KEYS.get(ch)
                    if choice is None:
                        continue
                    verdict, for_session = choice
                    approved = verdict == "allow"
                    if for_session:
                        self._session[key] = approved
                    scope = " for this session" if for_session else ""
                    _write_all(fd, f"{verdict}{scope}\r\n".encode())
                    who = "approved" if approved else "rejected"
                    return ApprovalResult(approved, f"{who}{scope} by user: {decision.reason}")
        finally:
            if saved is not None:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _preview(arguments: Any, limit: int = 300) -> str:
    try:
        s = json.dumps(arguments, ensure_ascii=True)
    except (TypeError, ValueError):
        s = repr(arguments)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
