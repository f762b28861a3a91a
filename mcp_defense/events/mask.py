"""Secret masking for events that leave the process (SIEM sinks, the audit log).

Like OPA's decision-log masking: the recording (`--record`) keeps the arguments as sent,
because `policy test` replays them, but what goes to a collector must not carry the tokens
an agent passed to a tool. Values are masked when their key names a secret (`password`,
`api_key`, `authorization`…) or when they look like a credential (provider token formats,
JWTs, private keys, `user:pass@` in URLs, `Bearer …`). The paths masked are listed in the
event's `masked` field, as OPA lists `erased`.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "<masked>"

_SECRET_KEY = re.compile(
    r"(?i)(pass(word|wd|phrase)?|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"client[_-]?secret|authorization|auth|cookie|session[_-]?id|credential|signature)$"
)
_SECRET_VALUE = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)"
    r"|\b(AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{30,}\b"
    r"|\bglpat-[A-Za-z0-9_\-]{20,}\b"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}\b"
    r"|\bsk-(ant-|proj-|live_|test_)?[A-Za-z0-9_\-]{20,}\b|\b[rs]k_live_[A-Za-z0-9]{16,}\b"
    r"|\bAIza[0-9A-Za-z_\-]{35}\b"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r"|(?i:\b(bearer|basic|token)\s+)[A-Za-z0-9._~+/\-]{16,}=*"
    r"|(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"
    r"|(?i:(?<=[-_]password=)|(?<=[-_]token=)|(?<=[-_]secret=)|(?<=[-_]key=))[^\s&'\"]+"
)


def mask_value(value: Any, path: str, masked: list[str]) -> Any:
    """A copy of `value` with secrets replaced by `<masked>`; appends masked paths."""
    if isinstance(value, str):
        out, n = _SECRET_VALUE.subn(MASK, value)
        if n:
            masked.append(path)
        return out
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
