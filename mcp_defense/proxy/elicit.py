"""Approval through MCP elicitation: the question the proxy puts to the person, through
their own client, and how their answer reads. One definition for every transport.

A client that declared the `elicitation` capability shows the question in its own UI, to
its user; the model does not answer it. The proxy's requests carry ids of its own
(`ELICIT_PREFIX…`): their answers are the proxy's and are never forwarded to the server.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_defense.protocol.jsonrpc import Kind, Message
from mcp_defense.proxy.session import AskApproval

ELICIT_PREFIX = "mcp-defense-approval-"


def elicitation_request(eid: str, a: AskApproval) -> dict[str, Any]:
    """An `elicitation/create` request asking the person to allow or refuse one call."""
    args = json.dumps(a.arguments, ensure_ascii=False, default=str)
    if len(args) > 2000:
        args = args[:2000] + "…"
    return {
        "jsonrpc": "2.0",
        "id": eid,
        "method": "elicitation/create",
        "params": {
            "message": f"mcp-defense: the tool call {a.tool} needs your approval.\n"
            f"Rule {a.decision.rule}: {a.decision.reason}\nArguments: {args}",
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "approve": {
                        "type": "boolean",
                        "title": "Allow this call",
                        "description": "Yes runs the call once; no refuses it.",
                    }
                },
                "required": ["approve"],
            },
        },
    }


def is_answer(msg: Message) -> bool:
    """A response to one of the proxy's own elicitation requests."""
    return (
        msg.kind in (Kind.RESPONSE, Kind.ERROR)
        and isinstance(msg.id, str)
        and msg.id.startswith(ELICIT_PREFIX)
    )


def verdict(msg: Message) -> tuple[bool, str]:
    """(approved, reason) from the client's answer: only an explicit yes approves."""
    result = msg.obj.get("result") if msg.kind is Kind.RESPONSE else None
    action = result.get("action") if isinstance(result, dict) else None
    content = result.get("content") if isinstance(result, dict) else None
    approved = action == "accept" and isinstance(content, dict) and content.get("approve") is True
    how = {"accept": "answered", "decline": "declined", "cancel": "cancelled"}.get(
        str(action), "failed"
    )
    word = "approved" if approved else "rejected"
    return approved, f"{word} by the user in the client (elicitation {how})"


def can_elicit(client_capabilities: dict[str, Any]) -> bool:
    return "elicitation" in client_capabilities
