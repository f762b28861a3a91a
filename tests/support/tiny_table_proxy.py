"""Run the stdio proxy over a tiny, hand-written table (tests only).

Framing tests must not depend on the policy compiler: this table is just enough policy to
produce every action. Usage: python tests/support/tiny_table_proxy.py [--observe] [--record F]
[--max-message-bytes N] [--approval-tty PATH --approval-timeout S] -- SERVER...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mcp_defense.events.record import open_recorder  # noqa: E402
from mcp_defense.policy.facts import Action, Decision, ToolCall  # noqa: E402
from mcp_defense.proxy.approval import Approver  # noqa: E402
from mcp_defense.proxy.stdio import StdioProxy  # noqa: E402


class TinyTable:
    version = "tiny-1"
    archetypes = frozenset({"filesystem"})

    def decide(self, call: ToolCall) -> Decision:
        args: Any = call.arguments
        if (
            call.archetype not in self.archetypes
            or not isinstance(call.tool, str)
            or not isinstance(args, dict)
        ):
            return self._d(Action.DENY, "malformed", "cannot evaluate call", call)
        path = str(args.get("path", ""))
        if ".aws/" in path or ".ssh/" in path:
            return self._d(Action.DENY, "crown_jewel", f"crown jewel: {path}", call)
        if "/.env" in path:
            return self._d(
                Action.REQUIRE_APPROVAL, "sensitive_path", f"sensitive file: {path}", call
            )
        if call.tool == "self_destruct":
            return self._d(Action.KILL, "kill_switch", "server asked to self-destruct", call)
        if call.tool == "fetch_url":
            return self._d(Action.ALERT, "network_alert", "network access", call)
        return self._d(Action.ALLOW, "", "", call)

    def _d(self, action: Action, rule: str, reason: str, call: ToolCall) -> Decision:
        return Decision(action, rule, reason, self.version, call.correlation_id)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--observe", action="store_true")
    ap.add_argument("--record")
    ap.add_argument("--max-message-bytes", type=int, default=64 << 20)
    ap.add_argument("--approval-tty")
    ap.add_argument("--approval-timeout", type=float, default=5.0)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    ns = ap.parse_args()
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    table = TinyTable()
    recorder = open_recorder(ns.record, live=False)
    approver = Approver(ns.approval_timeout, ns.approval_tty) if ns.approval_tty else None
    proxy = StdioProxy(
        command,
        archetype="filesystem",
        agent_id="test-agent",
        get_table=lambda: table,
        observe=ns.observe,
        approver=approver,
        recorder=recorder,
        max_message_bytes=ns.max_message_bytes,
        shutdown_grace_s=1.0,
        term_grace_s=1.0,
    )
    try:
        return proxy.run()
    finally:
        recorder.close()


if __name__ == "__main__":
    sys.exit(main())
