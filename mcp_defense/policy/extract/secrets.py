"""Secrets in text: what a tool result (or an event leaving the process) must not carry.

One detector set, used for response rules (`result.secrets`, `redact`) and for masking the
events that go to sinks (`events/mask.py`). Linear time (RE2, one pass for every kind), so a
16 MiB result is scanned in tens of milliseconds whatever it holds.

A private key is matched as a whole block, armour to armour (a redaction that leaves the
body of a PEM key redacts nothing); an unterminated block runs to the end of the text.
Assignment-style secrets (`.env` lines, `aws_secret_access_key = …`) redact the value only.
"""

from __future__ import annotations

from dataclasses import dataclass

import re2  # type: ignore[import-untyped]

# (kind, RE2 pattern). A pattern with a group named `v` redacts only that group.
DETECTORS: tuple[tuple[str, str], ...] = (
    (
        "private_key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?"
        r"(?:-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
    ),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA|AROA|AIDA)[0-9A-Z]{16}\b"),
    (
        "aws_secret_access_key",
        r"(?i:aws_?secret_?access_?key|secretaccesskey)[\"']?\s*[=:]\s*[\"']?(?P<v>[A-Za-z0-9/+]{40})\b",
    ),
    ("gcp_api_key", r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    (
        "azure_storage_key",
        r"(?i:AccountKey|SharedAccessKey)\s*=\s*(?P<v>[A-Za-z0-9+/]{40,}={0,2})",
    ),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})\b"),
    ("gitlab_token", r"\bglpat-[A-Za-z0-9_\-]{20,}\b"),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    ("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b"),
    ("pypi_token", r"\bpypi-AgE[A-Za-z0-9_\-]{50,}"),
    ("openai_anthropic_key", r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{32,}\b"),
    ("stripe_key", r"\b[rs]k_live_[A-Za-z0-9]{16,}\b"),
    ("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("url_password", r"[a-z][a-z0-9+.\-]*://[^/\s:@]+:(?P<v>[^/\s@]{6,})@"),
    ("bearer_token", r"(?i:\b(?:bearer|basic|token)\s+)(?P<v>[A-Za-z0-9._~+/\-]{16,}=*)"),
    ("flag_secret", r"(?i:[-_](?:password|token|secret|key)=)(?P<v>[^\s&'\"]{6,})"),
    (
        # `.env` style: an UPPER_SNAKE name that says secret, a value that looks generated.
        "env_secret",
        r"(?m:^[ \t]*(?:export[ \t]+)?[A-Z_][A-Z0-9_]*"
        r"(?:SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIALS?)"
        r"[A-Z0-9_]*[ \t]*=[ \t]*[\"']?(?P<v>[A-Za-z0-9_\-+/=.~:@!%^*]{8,}))",
    ),
)

_OPTIONS = re2.Options()
_OPTIONS.max_mem = 64 << 20
_COMBINED = re2.compile(
    "|".join(
        f"(?P<{kind}>{pattern.replace('(?P<v>', f'(?P<{kind}__v>')})" for kind, pattern in DETECTORS
    ),
    _OPTIONS,
)
_GROUP = {i: name for name, i in _COMBINED.groupindex.items()}
_VALUE_GROUP = {
    kind: _COMBINED.groupindex[f"{kind}__v"]
    for kind, _ in DETECTORS
    if f"{kind}__v" in _COMBINED.groupindex
}
_KIND_GROUP = {kind: _COMBINED.groupindex[kind] for kind, _ in DETECTORS}
# Kinds whose match is a guess from context: the value must look generated (letters and digits,
# not a placeholder), or it is an example, a variable name, a field of code.
_GUESSED = frozenset({"env_secret", "url_password", "bearer_token", "flag_secret"})
_PLACEHOLDERS = ("xxx", "changeme", "example", "your", "password", "secret", "token", "placeholder")


def _looks_generated(value: str) -> bool:
    low = value.lower()
    return (
        any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and not any(p in low for p in _PLACEHOLDERS)
    )


# Cheap literal hints: a text holding none of them is not scanned at all.
_HINTS = (
    "PRIVATE KEY",
    "AKIA",
    "ASIA",
    "AROA",
    "AIDA",
    "ecret",
    "ECRET",
    "AIza",
    "ccountKey",
    "ccessKey",
    "gh",
    "github_pat_",
    "glpat-",
    "xox",
    "npm_",
    "pypi-",
    "sk-",
    "k_live_",
    "eyJ",
    "://",
    "=",
    "earer",
    "asic",
    "oken",
)


@dataclass(frozen=True, slots=True)
class Secret:
    kind: str
    start: int  # the span to redact (the value only, for assignments)
    end: int


def find_secrets(text: str) -> list[Secret]:
    # Short texts (most strings) are ruled out by substring tests; a long one is cheaper to
    # scan once with RE2 than twenty times with `in`.
    if len(text) < 65536 and not any(h in text for h in _HINTS):
        return []
    out: list[Secret] = []
    for m in _COMBINED.finditer(text):
        for kind, gi in _KIND_GROUP.items():
            if m.group(gi) is not None:
                vi = _VALUE_GROUP.get(kind)
                if vi is not None and m.group(vi) is not None:
                    value = m.group(vi)
                    start = m.span(vi)[0]
                    inner = find_secrets(value) if kind in _GUESSED else []
                    if inner:  # `GITHUB_TOKEN=ghp_…`: the specific kind names it best
                        out.extend(Secret(x.kind, start + x.start, start + x.end) for x in inner)
                    elif kind not in _GUESSED or _looks_generated(value):
                        out.append(Secret(kind, *m.span(vi)))
                else:
                    out.append(Secret(kind, *m.span(gi)))
                break
    return out


def redact(text: str, secrets: list[Secret] | None = None) -> tuple[str, list[str]]:
    """The text with every secret replaced by `[REDACTED:kind]`, and the kinds replaced."""
    found = find_secrets(text) if secrets is None else secrets
    if not found:
        return text, []
    parts: list[str] = []
    last = 0
    for s in found:
        parts.append(text[last : s.start])
        parts.append(f"[REDACTED:{s.kind}]")
        last = s.end
    parts.append(text[last:])
    return "".join(parts), [s.kind for s in found]


# A necessary condition of every detector that survives JSON escaping (a newline is `\n`
# there, a quote `\"`): a serialized message that does not match holds no secret, and is
# not parsed to look for one. Scanned on the raw bytes, in linear time, without a copy.
_MAYBE = re2.compile(
    rb"PRIVATE KEY|(?:AKIA|ASIA|AROA|AIDA)[0-9A-Z]{16}|AIza|gh[pousr]_|github_pat_|glpat-|xox[abposr]-"
    rb"|npm_|pypi-AgE|sk-|k_live_|eyJ|://[^/\s:@]+:[^/\s@]+@"
    rb"|(?i:secret|token|passw|api_?key|private_?key|access_?key|credential|accountkey|"
    rb"sharedaccesskey|bearer|basic)",
    _OPTIONS,
)


def may_contain_secrets(raw: bytes) -> bool:
    return _MAYBE.search(raw) is not None
