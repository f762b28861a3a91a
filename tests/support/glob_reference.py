"""The glob semantics as they were defined before RE2: Python `re` (backtracking), for tests.

A test oracle only (tests/test_globs.py compares mcp_defense.policy.globs with it on short
paths, where backtracking costs nothing): the translation of the Python `re` version, kept
verbatim.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable

from mcp_defense.policy.globs import GlobError

# The usual roots of homes: Linux, macOS (and its /System/Volumes/Data firmlink), BSD and
# Solaris, Fedora Atomic, service accounts under /var/lib (jenkins, postgres, …), the root
# accounts of Linux and macOS, and the homes of CI runners (GitHub Actions: /github/home).
_HOME_ROOTS = (
    "/home/[^/]+",
    "/Users/[^/]+",
    "/System/Volumes/Data/Users/[^/]+",
    "/usr/home/[^/]+",
    "/export/home/[^/]+",
    "/var/home/[^/]+",
    "/var/lib/[^/]+",
    "/root",
    "/var/root",
    "/github/home",
    "/mnt/[A-Za-z]/Users/[^/]+",  # Windows drive paths, as the extractor writes them (WSL mount)
    "/[^/]+/[A-Za-z][$]/Users/[^/]+",  # UNC admin shares (\\host\c$\Users\bob)
)


def _home_re() -> str:
    """`~` in a jewel glob means every home: the usual roots, every home in the password
    database and the running user's `$HOME` — a key under an unusual home is still a key."""
    homes: set[str] = set()
    try:
        homes.update(entry.pw_dir for entry in pwd.getpwall())
    except OSError:  # pragma: no cover - no password database
        pass
    homes.add(os.environ.get("HOME", ""))
    extra = sorted(re.escape(h.rstrip("/")) for h in homes if h.startswith("/") and h != "/")
    return "(?:" + "|".join((*_HOME_ROOTS, *extra)) + ")"


HOME_RE = _home_re()
_ANY_DEPTH = r"(?:[^\n]*/)?"  # what a leading `**/` becomes


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
    # Factor the two common openings (`~/…`: every home; `**/…`: any depth) so a path is tried
    # against the home alternatives once per set, not once per glob: same language, far fewer
    # backtracking branches for the unmatched paths that are the common case.
    groups: dict[str, list[str]] = {}
    alternatives: list[str] = []
    for body in bodies:
        for opening in (HOME_RE, _ANY_DEPTH):
            if body.startswith(opening) and body != opening:
                groups.setdefault(opening, []).append(body[len(opening) :])
                break
        else:
            alternatives.append(f"(?:{body})")
    for opening, rests in groups.items():
        alternatives.append(opening + "(?:" + "|".join(f"(?:{r})" for r in rests) + ")")
    return re.compile("(?:" + "|".join(alternatives) + r")\Z", flags)
