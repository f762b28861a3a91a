"""Path globs → one compiled RE2 expression per set: linear time in the path, whatever the glob.

`*` matches within one path segment (dot-files included: hiding behind a leading dot must not
escape a rule), `**` any number of segments, `?` one character, `{a,b}` alternatives, `[...]`
classes, and a leading `~` every home (`_home_re`): the attacker picks which home to read.

The globs come from the policy, the paths from the agent (up to the extractor's
`MAX_PATH_BYTES`). A backtracking engine tries every way to split a path among the wildcards
of `/w/*a*a*b` or `**/**/**/x` (seconds to minutes for one 4 KiB path, on the proxy's only
reader thread), so sets compile with RE2 (automata: time linear in the path, no backtracking;
see benchmarks/bench_globs.py). RE2 reads UTF-8, which has no lone surrogates: a path (or glob)
holding one — JSON can carry `\\ud800` — is matched with each surrogate read as U+FFFD, one
character for one, so `?`, `*` and `**` count it as before.
"""

from __future__ import annotations

import os
import pwd
import re
import string
from collections.abc import Callable, Iterable
from functools import lru_cache

import re2  # type: ignore[import-untyped]

ENGINE = "RE2 (linear time)"

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

_SURROGATE = re.compile("[\ud800-\udfff]")


def _unsurrogate(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


# ASCII punctuation as `\\c`, space and controls as `\\x{hh}`; letters, digits and non-ASCII
# characters stand for themselves.
_ESCAPES = {ord(c): "\\" + c for c in string.punctuation} | {
    i: f"\\x{{{i:x}}}" for i in (*range(0x20), 0x20, 0x7F)
}


def _lit(c: str) -> str:
    """One character as an RE2 literal (outside or inside a class)."""
    return c.translate(_ESCAPES)


def _escape(text: str) -> str:
    return _unsurrogate(text).translate(_ESCAPES)


def _home_re() -> str:
    """`~` in a jewel glob means every home: the usual roots, every home in the password
    database and the running user's `$HOME` — a key under an unusual home is still a key."""
    homes: set[str] = set()
    try:
        homes.update(entry.pw_dir for entry in pwd.getpwall())
    except OSError:  # pragma: no cover - no password database
        pass
    homes.add(os.environ.get("HOME", ""))
    extra = sorted(_escape(h.rstrip("/")) for h in homes if h.startswith("/") and h != "/")
    return "(?:" + "|".join((*_HOME_ROOTS, *extra)) + ")"


HOME_RE = _home_re()
_ANY_DEPTH = r"(?:[^\n]*/)?"  # what a leading `**/` becomes


class GlobError(ValueError):
    pass


def _class(glob: str, body: str) -> str:
    """A `[...]` body (`!` or `^` first negates; `a-z` ranges; everything else literal,
    backslashes and `[` included) as an RE2 class of escaped characters."""
    negate = body[:1] in ("!", "^")
    items = _unsurrogate(body[1:] if negate else body)
    if not items:
        raise GlobError(f"empty '[]' in {glob!r}")
    out = []
    i = 0
    while i < len(items):
        lo = items[i]
        if i + 2 < len(items) and items[i + 1] == "-":
            hi = items[i + 2]
            if hi < lo:
                raise GlobError(f"bad range '{lo}-{hi}' in {glob!r}")
            out.append(f"{_lit(lo)}-{_lit(hi)}")
            i += 3
        else:
            out.append(_lit(lo))
            i += 1
    return "[" + ("^" if negate else "") + "".join(out) + "]"


_SPECIAL = frozenset("*?[{},/")  # (`/` ends a run: a trailing `/**` looks at the `\\/` before it)


@lru_cache(maxsize=16384)
def glob_to_regex(glob: str) -> str:
    """Translate one glob to an RE2 regex body (no anchors)."""
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
                    out.append(_ANY_DEPTH)  # `**/` zero or more whole segments
                    i = j + 1
                    continue
                if before_slash and j == n:
                    if out and out[-1] == r"\/":
                        out[-1] = r"(?:/[^\n]*)?"  # trailing `/**`: the dir itself or below
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
            out.append(_class(glob, glob[i + 1 : j]))
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
            j = i + 1
            while j < n and glob[j] not in _SPECIAL:
                j += 1
            out.append(_escape(glob[i:j]))  # a run of literal characters
            i = j
            continue
        i += 1
    if depth:
        raise GlobError(f"unclosed '{{' in {glob!r}")
    return "".join(out)


# RE2's memory budget per set: the program (≈ 16 bytes per instruction) and the DFA's state
# cache, allocated as used. The default 8 MiB refuses a set of ~20,000 globs; 64 MiB holds
# several times that. Past the cache, RE2 falls back to its NFA: slower, still linear.
_MAX_MEM = 64 << 20
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.never_capture = True  # a yes/no answer: the DFA alone decides it
_OPTIONS.max_mem = _MAX_MEM
_OPTIONS_ICASE = re2.Options()
_OPTIONS_ICASE.log_errors = False
_OPTIONS_ICASE.never_capture = True
_OPTIONS_ICASE.max_mem = _MAX_MEM
_OPTIONS_ICASE.case_sensitive = False
# The binding of RE2's C++ class, below the `re2` module's `re`-like wrapper: a yes/no full
# match is `Match(ANCHOR_BOTH, utf8, 0, len)`, without the wrapper's offset bookkeeping and
# match objects (0.6 µs instead of 2.8 for a short path: the jewel check runs per path).
_RE2 = re2._re2.RE2
_BOTH = _RE2.Anchor.ANCHOR_BOTH


def compile_globs(
    globs: Iterable[str], *, ignore_case: bool = False
) -> Callable[[str], bool] | None:
    """One RE2 alternation for a whole set, as a `path → bool` full match; None for an empty
    set (matches nothing)."""
    bodies = [glob_to_regex(_unsurrogate(g)) for g in globs]
    if not bodies:
        return None
    # Factor the two common openings (`~/…`: every home; `**/…`: any depth) so the home
    # alternatives appear once per set, not once per glob: a smaller automaton.
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
    pattern = "|".join(alternatives).encode("utf-8")
    rx = _RE2(pattern, _OPTIONS_ICASE if ignore_case else _OPTIONS)
    if not rx.ok():
        err = rx.error()
        msg = err.decode(errors="replace") if isinstance(err, bytes) else str(err)
        raise GlobError(f"invalid glob set: {msg}")
    run = rx.Match

    def match(path: str) -> bool:
        try:
            text = path.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: one character for one (see above)
            text = _unsurrogate(path).encode("utf-8")
        return bool(run(_BOTH, text, 0, len(text))[0][0] >= 0)

    return match


class GlobSet:
    """A set of globs answering `matches(path)` with one RE2 call, memoised per path
    (agents ask about the same few paths over and over; the memo is bounded)."""

    __slots__ = ("globs", "ignore_case", "match_uncached", "_memo")

    _MEMO_MAX = 4096

    def __init__(self, globs: Iterable[str], *, ignore_case: bool = False) -> None:
        self.globs = tuple(globs)
        self.ignore_case = ignore_case
        m = compile_globs(self.globs, ignore_case=ignore_case)
        self.match_uncached: Callable[[str], bool] = m if m is not None else _never
        self._memo: dict[str, bool] = {}

    def matches(self, path: str) -> bool:
        hit = self._memo.get(path)
        if hit is not None:
            return hit
        result = self.match_uncached(path)
        if len(self._memo) >= self._MEMO_MAX:
            self._memo.clear()
        self._memo[path] = result
        return result

    def __bool__(self) -> bool:
        return bool(self.globs)


def _never(path: str) -> bool:
    return False
