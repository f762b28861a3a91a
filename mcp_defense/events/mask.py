"""Secret masking for events that leave the process (SIEM sinks, the audit log).

Like OPA's decision-log masking: the recording (`--record`) keeps the arguments as sent,
because `policy test` replays them, but what goes to a collector must not carry the tokens
an agent passed to a tool. Values are masked when their key names a secret (`password`,
`api_key`, `authorization`…) or when they look like a credential (provider token formats,
JWTs, private keys, `user:pass@` in URLs, `Bearer …`: the detectors of
`policy/extract/secrets.py`, the same that response rules use). The paths masked are listed in the
event's `masked` field, as OPA lists `erased`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypeVar

from mcp_defense.policy.extract.secrets import find_secrets

MASK = "<masked>"

E = TypeVar("E")

_SECRET_KEY = re.compile(
    r"(?i)(pass(word|wd|phrase)?|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"client[_-]?secret|authorization|auth|cookie|session[_-]?id|credential|signature)$"
)


def mask_value(value: Any, path: str, masked: list[str]) -> Any:
    """A copy of `value` with secrets replaced by `<masked>`; appends masked paths."""
    if isinstance(value, str):
        found = find_secrets(value)
        if not found:
            return value
        masked.append(path)
        parts: list[str] = []
        last = 0
        for s in found:
            parts.append(value[last : s.start])
            parts.append(MASK)
            last = s.end
        parts.append(value[last:])
        return "".join(parts)
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for k, v in value.items():
            sub = f"{path}.{k}"
            if isinstance(k, str) and _SECRET_KEY.search(k) and isinstance(v, str) and v:
                result[k] = MASK
                masked.append(sub)
            else:
                result[k] = mask_value(v, sub, masked)
        return result
    if isinstance(value, list):
        return [mask_value(v, f"{path}[{i}]", masked) for i, v in enumerate(value)]
    return value


def mask_event(d: dict[str, Any]) -> dict[str, Any]:
    """An event dict (`event_dict`) with its call arguments masked, or `d` itself if clean."""
    if "arguments" not in d:
        return d
    masked: list[str] = []
    args = mask_value(d["arguments"], "arguments", masked)
    if not masked:
        return d
    return {**d, "arguments": args, "masked": masked}


def masked(event: E) -> E:
    """`event` with its call arguments masked (a copy carrying `masked`), or `event` itself
    if it has nothing to mask. The one masking of event objects: sinks and the audit log."""
    arguments = getattr(event, "arguments", None)
    if arguments is None:
        return event
    paths: list[str] = []
    args = mask_value(arguments, "arguments", paths)
    if not paths:
        return event
    return dataclasses.replace(event, arguments=args, masked=paths)  # type: ignore[type-var]
