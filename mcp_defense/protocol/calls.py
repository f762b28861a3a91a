"""Turn one input line (JSON-RPC `tools/call`, or the `{"archetype", "params"}` shorthand) into a
ToolCall. `policy eval`, `policy explain` and transcript replay share this, so the three read
input the same way and a line they cannot read becomes a deny with the reason, never silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp_defense.policy.facts import ToolCall
from mcp_defense.protocol.jsonrpc import JsonFailure, decode_json, sniff_id


@dataclass(slots=True)
class LineCall:
    call: ToolCall | None  # None when the line is unusable; `error` says why
    request_id: Any = None
    error: str = ""


def call_from_object(
    obj: Any, archetype: str, *, agent_id: str = "", session_id: str = "", correlation_id: str = ""
) -> LineCall:
    """Accept a JSON-RPC tools/call request or `{"archetype": …, "params": {…}}`."""
    if not isinstance(obj, dict):
        return LineCall(None, None, "line is not a JSON object")
    rid = obj.get("id")
    if "method" in obj or "jsonrpc" in obj:
        if obj.get("method") != "tools/call":
            return LineCall(None, rid, f"not a tools/call request (method {obj.get('method')!r})")
    arch = obj.get("archetype", archetype)
    if not isinstance(arch, str) or not arch:
        return LineCall(None, rid, 'no archetype: give --archetype or an "archetype" field')
    params = obj.get("params")
    if not isinstance(params, dict):
        return LineCall(None, rid, "tools/call without a params object")
    name = params.get("name")
    if not isinstance(name, str):
        return LineCall(None, rid, "tools/call params.name must be a string")
    args = params.get("arguments", {})
    call = ToolCall(arch, name, args, agent_id, session_id, correlation_id)
    return LineCall(call, rid)


def call_from_line(data: bytes, archetype: str, **kw: str) -> LineCall:
    try:
        obj = decode_json(data)  # as strict as the live proxy: replay and eval must agree
    except JsonFailure as e:
        return LineCall(None, sniff_id(data), e.message)
    return call_from_object(obj, archetype, **kw)
