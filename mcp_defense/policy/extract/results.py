"""Facts of a tool result, for response rules: its text and the secrets in it, and the
redaction that keeps the result valid and the rest intact.

Scanned: every `text` content block, the `text` of embedded resources, every string value in
`structuredContent`, and the same in a `resources/read` or `prompts/get`
result (`contents[].text`, `messages[].content`). Base64 blobs (images, audio, binary
resources) are not text and are not scanned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from mcp_defense.policy.extract.secrets import Secret, find_secrets, redact
from mcp_defense.policy.facts import ResultFacts

MAX_TEXT = 1 << 20  # `result.text` for rules: the first MiB (secrets are found in all of it)


def _strings(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(path, string) of every scanned string of a result, in document order."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("blob", "data") and isinstance(v, str):
                continue  # base64 payloads
            if k == "uri" or k == "mimeType" or k == "type":
                continue
            yield from _strings(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, (*path, i))
    elif isinstance(node, str):
        yield path, node


Found = dict[int, list[Secret]]  # id(string) → its secrets: one scan serves facts and redaction


def _secrets(s: str, found: Found | None) -> list[Secret]:
    if found is None:
        return find_secrets(s)
    hit = found.get(id(s))
    if hit is None:
        hit = found[id(s)] = find_secrets(s)
    return hit


def result_facts(
    result: Any, is_error: bool = False, size: int = 0, found: Found | None = None
) -> ResultFacts:
    """`found`, when given, keeps each string's scan for `redact_result` on the same object."""
    if not isinstance(result, dict):
        return ResultFacts("", (), is_error, size)
    texts: list[str] = []
    kinds: list[str] = []
    total = 0
    for _, s in _strings(result):
        for secret in _secrets(s, found):
            if secret.kind not in kinds:
                kinds.append(secret.kind)
        if total < MAX_TEXT:
            texts.append(s[: MAX_TEXT - total])
            total += len(texts[-1])
    return ResultFacts(
        "\n".join(texts), tuple(kinds), bool(result.get("isError")) or is_error, size
    )


def redact_result(result: Any, found: Found | None = None) -> tuple[Any, list[str]]:
    """A copy of the result with every secret replaced by `[REDACTED:kind]`."""
    kinds: list[str] = []

    def fix(s: str) -> str:
        out, replaced = redact(s, _secrets(s, found))
        kinds.extend(replaced)
        return out

    return _map_strings(result, fix), kinds


def _map_strings(node: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (v if k in ("blob", "data", "uri", "mimeType", "type") else _map_strings(v, fn))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_map_strings(v, fn) for v in node]
    if isinstance(node, str):
        return fn(node)
    return node
