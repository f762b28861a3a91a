"""Path globs → one compiled regular expression per set.

`*` matches within one path segment (dot-files included: hiding behind a leading dot must not
escape a rule), `**` any number of segments, `?` one character, `{a,b}` alternatives, `[...]`
classes, and a leading `~` any user's home (`/home/<user>`, `/Users/<user>`, `/root`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

HOME_RE = r"(?:/home/[^/]+|/Users/[^/]+|/root)"


class GlobError(ValueError):
    pass


def glob_to_regex(glob: str) -> str:
    """Translate one glob to a regex body (no anchors)."""
    if not glob:
        raise GlobError("empty glob")
    out: list[str] = []
    i, n = 0, len(glob)
    if glob == "~" or glob.startswith("~/"):
        out.append(HOME_RE)
        i = 1
    depth = 0
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                before_slash = i == 0 or glob[i - 1] == "/"
                j = i + 2
                after_slash = j < n and glob[j] == "/"
                if before_slash and after_slash:
                    out.append(r"(?:[^\n]*/)?")  # `**/` zero or more whole segments
                    i = j + 1
                    continue
                if before_slash and j == n:
                    if out and out[-1].endswith("/"):
                        out[-1] = out[-1][:-1]
                        out.append(r"(?:/[^\n]*)?")  # trailing `/**`: the dir itself or below
                    else:
                        out.append(r"[^\n]*")
                    i = j
                    continue
                out.append(r"[^\n]*")
                i = j
                continue
            out.append(r"[^/]*")
        elif c == "?":
            out.append(r"[^/]")
        elif c == "[":
            j = glob.find(
                "]", i + 2 if glob.startswith("[!", i) or glob.startswith("[^", i) else i + 1
            )
            if j < 0:
                raise GlobError(f"unclosed '[' in {glob!r}")
            body = glob[i + 1 : j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
            continue
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise GlobError(f"unclosed '{{' in {glob!r}")
    return "".join(out)


def compile_globs(globs: Iterable[str], *, ignore_case: bool = False) -> re.Pattern[str] | None:
    """One alternation for a whole set; None for an empty set (matches nothing)."""
    bodies = [glob_to_regex(g) for g in globs]
    if not bodies:
        return None
    flags = re.IGNORECASE if ignore_case else 0
    return re.compile("(?:" + "|".join(f"(?:{b})" for b in bodies) + r")\Z", flags)


class GlobSet:
    """A set of globs answering `matches(path)` with one regex call, memoised per path
    (agents ask about the same few paths over and over; the memo is bounded)."""

    __slots__ = ("globs", "_re", "_match", "_memo")

    _MEMO_MAX = 4096

    def __init__(self, globs: Iterable[str], *, ignore_case: bool = False) -> None:
        self.globs = tuple(globs)
        self._re = compile_globs(self.globs, ignore_case=ignore_case)
        self._match = self._re.match if self._re is not None else None
        self._memo: dict[str, bool] = {}

    def matches(self, path: str) -> bool:
        hit = self._memo.get(path)
        if hit is not None:
            return hit
        m = self._match
        result = m is not None and m(path) is not None
        if len(self._memo) >= self._MEMO_MAX:
            self._memo.clear()
        self._memo[path] = result
        return result

    def __bool__(self) -> bool:
        return bool(self.globs)
