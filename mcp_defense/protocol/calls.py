"""The one call builder: how a decided MCP request becomes the `ToolCall` a table decides.

The live proxy (`proxy/session.py`), `policy eval`, `policy explain`, `policy test` replay of
transcripts and the Claude Code hook all build calls here, so one request is decided the same
way wherever it is seen. `tools/call` is decided as its tool; `resources/read`,
`resources/subscribe` and `prompts/get` are decided as a tool named after the method with the
params as arguments (a `file://` URI or a prompt argument reaches for the same files a tool
would, so the same rules decide). A line that cannot be read becomes a deny with the reason,
never silence.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_defense.policy.facts import ToolCall, ToolDefinition
from mcp_defense.protocol.jsonrpc import DECIDED_METHODS, JsonFailure, decode_json, sniff_id


def build_call(
    method: str,
    params: Any,
    archetype: str,
    agent_id: str = "",
    session_id: str = "",
    correlation_id: str = "",
    annotations: Mapping[str, Mapping[str, Any]] | None = None,
    definitions: Mapping[str, ToolDefinition] | None = None,
) -> ToolCall | str:
    """The ToolCall for one decided request, or why there is none (a str: refuse it).

    `method` must be one `is_decided` accepts. `annotations` maps tool names to the
    annotations the server advertised, `definitions` to their description and pin status
    (the proxy learns both from tools/list)."""
    if type(params) is not dict:
        return f"{method} params must be an object"
    if method == "tools/call":
        tool = params.get("name")
        arguments = params.get("arguments", {})
    elif method == COMPLETE:
        # Completing a file:// resource template lists the files it would read: decide it as
        # the read of the URI the completion is for.
        uri = completion_file_uri(params)
        if uri is None:
            return "completion/complete is decided only for a file:// resource reference"
        tool, arguments = "resources/read", {"uri": uri}
    else:
        tool = method
        arguments = params
    ann = annotations.get(tool) if annotations and type(tool) is str else None
    d = definitions.get(tool) if definitions and type(tool) is str else None
    if d is None:
        return ToolCall(archetype, tool, arguments, agent_id, session_id, correlation_id, ann)
    return ToolCall(
        archetype,
        tool,
        arguments,
        agent_id,
        session_id,
        correlation_id,
        ann,
        d.description,
        d.status,
    )


COMPLETE = "completion/complete"


def is_decided(method: str, params: Any) -> bool:
    """Whether policy decides this request (else it is forwarded as it is)."""
    return method in DECIDED_METHODS or (
        method == COMPLETE and completion_file_uri(params) is not None
    )


def completion_file_uri(params: Any) -> str | None:
    """The file URI a `completion/complete` of a resource reference is about, template
    variables filled with the argument being completed; None if it is not about a file."""
    if type(params) is not dict:
        return None
    ref = params.get("ref")
    if type(ref) is not dict:
        return None
    uri = ref.get("uri")
    if type(uri) is not str or not uri.strip().lower().startswith("file:"):
        return None
    arg = params.get("argument")
    if type(arg) is dict and type(arg.get("name")) is str and type(arg.get("value")) is str:
        name, value = arg["name"], arg["value"]
        for op in ("", "+", "/", "#", ".", ";", "?", "&"):  # RFC 6570 operators
            uri = uri.replace("{" + op + name + "}", value)
    return uri


def near_decided_method(method: str) -> str | None:
    """The decided method `method` imitates without being it, if any.

    `Tools/Call`, `"tools/call "` or a full-width spelling is not a method a server should
    accept, but a lenient one might fold it into `tools/call`: such a request would then run
    undecided. So a method that equals a decided method after trimming, case folding and
    Unicode compatibility normalisation, and is not that method, is refused."""
    if method in DECIDED_METHODS:
        return None
    if method.isascii() and method.isprintable() and method == method.strip().lower():
        return None  # the common case: a plain method that no folding could turn into one
    folded = unicodedata.normalize("NFKC", method).strip().casefold()
    folded = "".join(ch for ch in folded if unicodedata.category(ch) not in ("Cf", "Cc", "Zs"))
    return folded if folded in DECIDED_METHODS or folded == COMPLETE else None


@dataclass(slots=True)
class LineCall:
    call: ToolCall | None  # None when the line is unusable; `error` says why
    request_id: Any = None
    error: str = ""


def call_from_object(
    obj: Any, archetype: str, *, agent_id: str = "", session_id: str = "", correlation_id: str = ""
) -> LineCall:
    """Accept a JSON-RPC request of a decided method, or `{"archetype": …, "params": {…}}`
    (a tools/call's params)."""
    if not isinstance(obj, dict):
        return LineCall(None, None, "line is not a JSON object")
    rid = obj.get("id")
    method = "tools/call"
    if "method" in obj or "jsonrpc" in obj:
        method = obj.get("method")  # type: ignore[assignment]
        if type(method) is not str or not is_decided(method, obj.get("params")):
            return LineCall(
                None, rid, f"not a request the proxy decides (method {obj.get('method')!r})"
            )
    arch = obj.get("archetype", archetype)
    if not isinstance(arch, str) or not arch:
        return LineCall(None, rid, 'no archetype: give --archetype or an "archetype" field')
    call = build_call(
        method,
        obj.get("params"),
        arch,
        agent_id=agent_id,
        session_id=session_id,
        correlation_id=correlation_id,
    )
    if type(call) is str:
        return LineCall(None, rid, call)
    return LineCall(call, rid)  # type: ignore[arg-type]


def call_from_line(data: bytes, archetype: str, **kw: str) -> LineCall:
    try:
        obj = decode_json(data)  # as strict as the live proxy: replay and eval must agree
    except JsonFailure as e:
        return LineCall(None, sniff_id(data), e.message)
    return call_from_object(obj, archetype, **kw)
