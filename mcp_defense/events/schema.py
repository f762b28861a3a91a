"""JSON Schema of a recording line, generated from the event dataclasses in `model.py`.

`docs/record.schema.json` is this function's output (regenerate with
`python -m mcp_defense.events.schema > docs/record.schema.json`; a test fails when the two
differ), so the published format cannot drift from the code that writes and reads it.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import MISSING, fields
from typing import Any

from mcp_defense.events.model import EVENT_TYPES, SCHEMA_VERSION, Event
from mcp_defense.policy.facts import Action

SCHEMA_ID = "https://github.com/mcp-defense/mcp-defense/blob/main/docs/record.schema.json"

# Closed vocabularies the dataclasses type as plain `str`.
_ACTIONS = [a.value for a in Action]
_ENUMS: dict[tuple[str, str], list[Any]] = {
    ("tool_call", "decision"): _ACTIONS,
    ("tool_call", "expect"): [*_ACTIONS, None],
    ("tool_call", "approval"): ["", "approved", "rejected"],
    ("framing_refused", "direction"): ["client->server", "server->client"],
    ("task", "change"): ["created", "status", "ended", "expired", "refused"],
    ("task", "status"): ["", "working", "input_required", "completed", "failed", "cancelled"],
    ("subscription", "change"): ["listen", "acknowledged", "closed", "resource_updated"],
}


def _json_type(tp: Any) -> dict[str, Any]:
    if tp is Any:
        return {}
    simple = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
    if tp in simple:
        return {"type": simple[tp]}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        members = [_json_type(a) for a in args]
        if all(set(m) == {"type"} for m in members):
            return {"type": [m["type"] for m in members]}
        return {"anyOf": members}
    if origin is list:
        return {"type": "array", "items": _json_type(args[0]) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": _json_type(args[1]) if args else {}}
    raise TypeError(f"no JSON Schema mapping for {tp!r}")


def event_schema(cls: type[Event]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {"type": {"const": cls.type}}
    required = ["type"]
    for f in fields(cls):
        prop = _json_type(hints[f.name])
        if f.name == "ts":
            prop["format"] = "date-time"
        enum = _ENUMS.get((cls.type, f.name))
        if enum is not None:
            prop = {"enum": enum}
        props[f.name] = prop
        if f.default is MISSING and f.default_factory is MISSING:
            required.append(f.name)
    doc = (cls.__doc__ or "").strip()
    out: dict[str, Any] = {"type": "object"}
    if doc and not doc.startswith(cls.__name__ + "("):  # dataclass's generated signature
        out["description"] = " ".join(doc.split())
    out.update({"properties": props, "required": required, "additionalProperties": True})
    return out


def record_schema() -> dict[str, Any]:
    """The schema of one line of a `--record` file (any event of the one family)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "mcp-defense recording line",
        "description": (
            "One JSON object per line, one event per object, flushed as written. Readers must "
            "ignore unknown properties; `type` selects the event. Generated from "
            f"mcp_defense/events/model.py (schema version {SCHEMA_VERSION})."
        ),
        "oneOf": [{"$ref": f"#/$defs/{name}"} for name in EVENT_TYPES],
        "$defs": {name: event_schema(cls) for name, cls in EVENT_TYPES.items()},
    }


def render() -> str:
    return json.dumps(record_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
