"""Can a glob pattern match a jewel? Pattern-against-glob intersection.

An argument such as `~/.ss?/id*`, `/home/*/.aws/credentials` or the `pattern` of a Glob tool is
expanded by the server, against the server's file system: expanding it here (or matching it as
a literal string) misses every file that is absent on the proxy's host. So the question is
whether the two languages intersect — is there a path that both the pattern and some jewel glob
match — which needs no file system at all.

Both sides are split into `/`-separated segments. A segment is a small glob (`*`, `?`, `[...]`,
`[!...]`, literal characters) that never matches `/`; a whole `**` segment is any number of
segments (bash's globstar; a jewel's `**`). A jewel glob that starts with `~` starts with any
home (the same homes jewel globs mean, see `globs.HOME_RE`). Matching ignores case, as jewel
matching does. Approximations only ever widen a language (a pattern may be said to reach a
jewel it cannot reach, never the reverse): a `**` inside a segment is `*`, an unreadable class is
any character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from mcp_defense.policy import globs as _globs

_META = frozenset("*?[")
# Work per pattern is bounded; a pattern beyond these bounds is taken to reach every jewel (fail
# closed: no path a person means is 24 directories deep or spelled 8 ways in one word).
MAX_PATTERN_CHARS = 1024
MAX_PATTERN_SEGMENTS = 24
MAX_PATTERN_VARIANTS = 8
_DSTAR = "**"
_HOME = "~"

# -- segments -----------------------------------------------------------------------------------

# One character position of a segment: ("lit", c) | ("any", "") | ("star", "") | ("set", chars)
# | ("nset", chars) — a class of `chars`, or of every character but `chars` (and `/`).
_Tok = tuple[str, str]
_ANY_CLASS = 512  # a range wider than this is read as "any character"


def _class(body: str) -> _Tok:
    negated = body[:1] in ("!", "^")
    if negated:
        body = body[1:]
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = ord(body[i]), ord(body[i + 2])
            if high - low > _ANY_CLASS:
                return ("any", "")
            chars.update(chr(c) for c in range(low, high + 1))
            i += 3
            continue
        chars.add(body[i])
        i += 1
    text = "".join(sorted({c.lower() for c in chars} | {c.upper() for c in chars}))
    return ("nset", text) if negated else ("set", text)


@lru_cache(maxsize=4096)
def _tokens(segment: str) -> tuple[_Tok, ...]:
    out: list[_Tok] = []
    i = 0
    n = len(segment)
    while i < n:
        c = segment[i]
        if c == "*":
            if not out or out[-1][0] != "star":
                out.append(("star", ""))
        elif c == "?":
            out.append(("any", ""))
        elif c == "[":
            start = i + 2 if segment.startswith(("[!", "[^"), i) else i + 1
            end = segment.find("]", start + 1 if start < n and segment[start] == "]" else start)
            if end < 0:
                out.append(("lit", "["))
            else:
                out.append(_class(segment[i + 1 : end]))
                i = end
        else:
            out.append(("lit", c.lower()))
        i += 1
    return tuple(out)


def _accepts(tok: _Tok, c: str) -> bool:
    kind, chars = tok
    if kind == "lit":
        return chars == c
    if kind == "set":
        return c in chars
    if kind == "nset":
        return c not in chars
    return True  # any, star


def _compatible(a: _Tok, b: _Tok, no_dot: bool = False) -> bool:
    """Is there one character (never `/`, nor `.` when `no_dot`) both positions accept?"""
    if no_dot:
        return _compatible_no_dot(a, b)
    ka, kb = a[0], b[0]
    if ka in ("any", "star"):
        return kb in ("any", "star", "nset") or any(c != "/" for c in b[1])
    if kb in ("any", "star"):
        return ka == "nset" or any(c != "/" for c in a[1])
    if ka == "lit":
        return _accepts(b, a[1])
    if kb == "lit":
        return _accepts(a, b[1])
    if ka == "set":
        return any(_accepts(b, c) for c in a[1])
    if kb == "set":
        return any(_accepts(a, c) for c in b[1])
    return True  # two negated classes: the alphabet is not finite


def _compatible_no_dot(a: _Tok, b: _Tok) -> bool:
    ka, kb = a[0], b[0]
    if ka == "lit":
        return a[1] != "." and _accepts(b, a[1])
    if kb == "lit":
        return b[1] != "." and _accepts(a, b[1])
    if ka == "set":
        return any(c not in "./" and _accepts(b, c) for c in a[1])
    if kb == "set":
        return any(c not in "./" and _accepts(a, c) for c in b[1])
    return True  # any, star, negated classes: some other character


@lru_cache(maxsize=65536)
def segments_intersect(a: str, b: str) -> bool:
    """Is there one path segment that pattern segment `a` and jewel segment `b` both match?

    As in POSIX shells (and Python's, Node's and zsh's globbing by default), a wildcard does
    not match a leading `.`: only a pattern segment that starts with `.` names dot-files
    (`shopt -s dotglob` is the extractor's business: it adds the dotted readings)."""
    if a == b:
        return True
    no_dot = not a.startswith(".")
    if b == "*" and not no_dot:
        return True
    ta, tb = _tokens(a), _tokens(b)
    seen: set[tuple[int, int, bool]] = set()
    stack = [(0, 0, not no_dot)]
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        i, j, started = state
        if i == len(ta) and j == len(tb):
            return True
        star_a = i < len(ta) and ta[i][0] == "star"
        star_b = j < len(tb) and tb[j][0] == "star"
        if star_a:
            stack.append((i + 1, j, started))
        if star_b:
            stack.append((i, j + 1, started))
        if i < len(ta) and j < len(tb) and _compatible(ta[i], tb[j], not started):
            ni = i if star_a else i + 1
            nj = j if star_b else j + 1
            if (ni, nj, True) != state:
                stack.append((ni, nj, True))
    return False


def _match(p: Sequence[str], j: Sequence[str], p_deep: bool = True) -> bool:
    """Is there a path both segment lists match (`**` = any number of segments)? A pattern's
    `**` does not descend into dot-directories (globstar's default), and with `p_deep` false
    it matches no segment at all."""
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    lp, lj = len(p), len(j)
    while stack:
        pi, ji = stack.pop()
        if (pi, ji) in seen:
            continue
        seen.add((pi, ji))
        if pi == lp and ji == lj:
            return True
        p_star = pi < lp and p[pi] == _DSTAR
        j_star = ji < lj and j[ji] == _DSTAR
        if p_star:
            stack.append((pi + 1, ji))
            if p_deep and ji < lj and (j[ji] == _DSTAR or segments_intersect("*", j[ji])):
                stack.append((pi, ji + 1))
        if j_star:
            stack.append((pi, ji + 1))
            if pi < lp:
                stack.append((pi + 1, ji))
        if not p_star and not j_star and pi < lp and ji < lj and segments_intersect(p[pi], j[ji]):
            stack.append((pi + 1, ji + 1))
    return False


# -- globs ---------------------------------------------------------------------------------------


def _braces(text: str, limit: int = 256) -> list[str]:
    """`{a,b}` alternatives (nested), at most `limit` (then `limit + 1` of them: the caller
    decides what too many means); an unbalanced brace is a literal."""
    start = text.find("{")
    if start < 0:
        return [text]
    depth = 0
    parts: list[str] = []
    last = start + 1
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                parts.append(text[last:i])
                head, tail = text[:start], text[i + 1 :]
                out: list[str] = []
                for part in parts:
                    for rest in _braces(head + part + tail, limit):
                        out.append(rest)
                        if len(out) > limit:
                            return out
                return out
        elif c == "," and depth == 1:
            parts.append(text[last:i])
            last = i + 1
    return [text]


def _segments(glob: str) -> tuple[str, ...]:
    """Segments of an absolute glob (`/a/b` → ("", "a", "b")); a segment that is `**` with other
    characters around it is `*` (it cannot be wider than a whole `**` segment)."""
    out: list[str] = []
    for part in glob.split("/"):
        if part != _DSTAR and "**" in part:
            part = re.sub(r"\*{2,}", "*", part)
        if part == _DSTAR and out and out[-1] == _DSTAR:
            continue
        out.append(part)
    return tuple(out)


def is_pattern(path: str) -> bool:
    """A path with glob characters — other than the extractor's `root/**` marker for a
    recursive read (that one is decided by the jewel roots, see crown_jewels.mcpd)."""
    if "{" in path and "}" in path:
        return True  # brace alternatives (Glob tools, a quoted shell word)
    if not any(c in _META for c in path):
        return False
    if path.endswith("/**"):
        return any(c in _META for c in path[:-3])
    return True


def _home_globs() -> tuple[tuple[tuple[str, ...], bool], ...]:
    """The homes `~` means in jewel globs, as segment lists, read from `globs.HOME_RE`
    (alternatives of escaped literals and `[^/]+` / `[…]` pieces); any piece this reader does
    not know widens to `*`."""
    regex = getattr(_globs, "HOME_RE", "")
    body = regex[3:-1] if regex.startswith("(?:") and regex.endswith(")") else ""
    alternatives: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            current.append(body[i + 1])
            i += 2
            continue
        if c == "|":
            alternatives.append("".join(current))
            current = []
        elif c == "[":
            end = body.find("]", i + 1)
            end = len(body) - 1 if end < 0 else end
            plus = end + 1 < len(body) and body[end + 1] == "+"
            klass = body[i + 1 : end]
            if plus or klass.startswith("^"):
                current.append("*")
            else:
                current.append(klass if len(klass) == 1 else "[" + klass + "]")
            i = end + (2 if plus else 1)
            continue
        elif c in "()?+.*":
            current.append("*")
        else:
            current.append(c)
        i += 1
    alternatives.append("".join(current))
    homes = {_segments(a) for a in alternatives if a.startswith("/")}
    if not homes:  # pragma: no cover - HOME_RE gone or unreadable: every absolute path
        homes = {("", _DSTAR)}
    # A UNC admin share (`/host/c$/Users/bob`) may sit below any directory: a pattern's `**`
    # reaches it only when the pattern spells its segments (else `ws/**/*.py` would reach one).
    return tuple((home, not any("$" in seg for seg in home)) for home in sorted(homes))


class JewelPatterns:
    """Decides whether a pattern can match one of a set of jewel globs."""

    __slots__ = ("_absolute", "_homes", "_home_rel")

    def __init__(self, globs: Iterable[str]) -> None:
        self._homes = _home_globs()
        # Globs below a home (segments after `~`) and absolute globs, each indexed by their
        # first segment when it is literal ("" for a wildcard first segment).
        self._home_rel: dict[str, list[tuple[str, ...]]] = {}
        self._absolute: dict[str, list[tuple[str, ...]]] = {}
        for glob in globs:
            for item in _braces(glob):
                if item == _HOME or item.startswith(_HOME + "/"):
                    segs = _segments(item[2:]) if len(item) > 1 else ()
                    self._home_rel.setdefault(_key(segs, 0), []).append(segs)
                elif item.startswith("/"):
                    segs = _segments(item)
                    self._absolute.setdefault(_key(segs, 1), []).append(segs)
                elif item.startswith(_DSTAR):  # `**/x`: at any depth
                    self._absolute.setdefault("", []).append(("", *_segments(item)))
                # (any other relative glob matches no absolute path: globs.py anchors it)

    def reaches(self, pattern: str) -> bool:
        """Is there a path that the pattern and one of the globs both match? (True for a
        pattern too large to decide within the bounds above.)"""
        if len(pattern) > MAX_PATTERN_CHARS or pattern.count("/") > MAX_PATTERN_SEGMENTS:
            return True
        items = _braces(pattern, MAX_PATTERN_VARIANTS)
        if len(items) > MAX_PATTERN_VARIANTS:
            return True
        for item in items:
            segs = _segments(item)
            if len(segs) > MAX_PATTERN_SEGMENTS + 1:
                return True
            if _any_match(segs, self._absolute, 1) or any(
                _any_match(segs[start:], self._home_rel, 0) for start in self._home_ends(segs)
            ):
                return True
        return False

    def _home_ends(self, segs: tuple[str, ...]) -> list[int]:
        """Where a home can end in the pattern: `segs[:i]` matches some home; a `**` that
        matched the home's end may go on matching (then its own position is a start too)."""
        ends: set[int] = set()
        deep_pattern = _DSTAR in segs
        for home, deep in self._homes:
            if deep_pattern and deep:
                cuts: Iterable[int] = range(1, len(segs) + 1)
            else:  # without `**` a prefix matches a home of its own length only
                cuts = (len(home),) if len(home) <= len(segs) else ()
            for i in cuts:
                if _fits(segs[:i], home) and _match(segs[:i], home, deep):
                    ends.add(i)
                    if segs[i - 1] == _DSTAR:
                        ends.add(i - 1)
        return sorted(ends)


def _key(segs: Sequence[str], index: int) -> str:
    if index < len(segs) and not any(c in _META for c in segs[index]) and segs[index] != "":
        return segs[index].lower()
    return ""


def _any_match(segs: Sequence[str], index: dict[str, list[tuple[str, ...]]], at: int) -> bool:
    first = segs[at] if at < len(segs) else None
    if first is None or first == _DSTAR or any(c in _META for c in first):
        candidates: Iterable[list[tuple[str, ...]]] = index.values()
    else:
        candidates = (index.get(first.lower(), []), index.get("", []))
    return any(_fits(segs, glob) and _match(segs, glob) for group in candidates for glob in group)


def _fits(p: Sequence[str], j: Sequence[str]) -> bool:
    """Can the segment counts agree? (`**` stands for any number, the others for one each.)"""
    p_fixed = len(p) - p.count(_DSTAR)
    j_fixed = len(j) - j.count(_DSTAR)
    if p_fixed == len(p) and j_fixed == len(j):
        return p_fixed == j_fixed
    if p_fixed == len(p):
        return p_fixed >= j_fixed
    if j_fixed == len(j):
        return j_fixed >= p_fixed
    return True
