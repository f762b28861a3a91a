"""Paths: every spelling of a filesystem path reduced to canonical absolute forms."""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote

from mcp_defense.policy.extract.limits import (
    _M_GENERIC,
    _M_SOFT,
    _M_STRICT,
    MAX_PATH_BYTES,
    MAX_RESOLVE_STEPS,
)
from mcp_defense.policy.facts import ExtractionError

if TYPE_CHECKING:
    from mcp_defense.policy.extract.env import _Ctx


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------


def _lexical(path: str) -> str:
    """Pure lexical normalisation of an absolute path (no /proc semantics)."""
    stack: list[str] = []
    for seg in path.split("/"):
        if not seg or seg == ".":
            continue
        if seg == "..":
            if stack:
                stack.pop()
            continue
        stack.append(seg)
    return "/" + "/".join(stack)


def _is_proc_owner(seg: str) -> bool:
    return seg == "self" or seg == "thread-self" or seg.isdigit()


def _normalise(path: str, ctx: _Ctx) -> list[str]:
    """Absolute path → canonical spellings, first is the primary one.

    `..` is resolved lexically, except through the /proc magic links, which the kernel follows
    while walking: `/proc/<pid>/root` is `/` and `/proc/<pid>/cwd` is the server's cwd (the
    workspace; for a foreign pid its cwd is unknown, so `/` is added too). The plain lexical
    reading is kept as well, and `/proc/<pid>/task/<tid>/x` also yields `/proc/<pid>/x` so a
    jewel like `/proc/*/environ` matches per-thread spellings.
    """
    if "/." not in path and "//" not in path and path[-1] != "/" and not path.startswith("/proc/"):
        return [path]
    if not path.startswith("/proc/") and "/proc/" not in path:
        return [_lexical(path)]
    out: list[str] = []
    segments = path.split("/")
    stack: list[str] = []
    for index, seg in enumerate(segments):
        if not seg or seg == ".":
            continue
        if seg == "..":
            if stack:
                stack.pop()
            continue
        stack.append(seg)
        if stack[0] != "proc" or len(stack) < 3 or not _is_proc_owner(stack[1]):
            continue
        depth = len(stack)
        link = None
        if depth == 3:
            link = stack[2]
        elif depth == 5 and stack[2] == "task" and stack[3].isdigit():
            link = stack[4]
        if depth == 4 and stack[2] == "task" and index + 1 < len(segments):
            # /proc/<pid>/task/<tid>/rest is also spelled /proc/<pid>/rest.
            rest = "/".join(segments[index + 1 :])
            for alt in _normalise(f"/proc/{stack[1]}/{rest}", ctx):
                out.append(alt)
        if link == "root":
            stack = []
        elif link == "cwd":
            if stack[1].isdigit():
                rest = "/".join(segments[index + 1 :])
                out.extend(_normalise("/" + rest, ctx))
            stack = list(ctx.ws_parts)
    primary = "/" + "/".join(stack)
    lexical = _lexical(path)
    result = [primary]
    for alt in (*out, lexical):
        if alt not in result:
            result.append(alt)
    return result


_OVERLONG_RE = re.compile(r"%(?:c0%af|e0%80%af|c0%ae|e0%80%ae|c1%9c|c0%2f|c0%5c)", re.I)
_OVERLONG_MAP = {
    "c0%af": "/",
    "e0%80%af": "/",
    "c0%ae": ".",
    "e0%80%ae": ".",
    "c1%9c": "\\",
    "c0%2f": "/",
    "c0%5c": "\\",
}


def _decode_stages(raw: str) -> list[str]:
    """Every percent-decoding depth of `raw` (a server may decode zero, one or more times)."""
    stages = [raw]
    current = raw
    if _OVERLONG_RE.search(current):
        current = _OVERLONG_RE.sub(lambda m: _OVERLONG_MAP[m.group()[1:].lower()], current)
        stages.append(current)
    for _ in range(8):
        if "%" not in current:
            break
        decoded = unquote(current, errors="replace")
        if decoded == current:
            break
        current = decoded
        if _OVERLONG_RE.search(current):
            current = _OVERLONG_RE.sub(lambda m: _OVERLONG_MAP[m.group()[1:].lower()], current)
        stages.append(current)
    return stages


_VAR_START = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-=+?])(?P<word>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


_SPECIAL_PARAM = re.compile(r"\$(?:[@*#?!$0-9-]|\{[@*#?!$0-9-]+\})")
_IFS_RE = re.compile(r"\$(?:IFS\b|\{IFS\})")


def _drop_special_params(text: str) -> str:
    """`c$@at`, `cu${1}rl`: positional/special parameters are empty in a `-c` string, so bash
    runs `cat`/`curl`. Removing them recovers the program name an attacker tried to split."""
    return _SPECIAL_PARAM.sub("", text) if "$" in text else text


_EXPANSION_STARTS = frozenset("({[`'\"0123456789@*#?!$-")


def _sub_known_vars(text: str, variables: Mapping[str, str | None]) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        value = variables.get(name)
        if value is None:
            op = match.group("op")
            if op and op[-1] in "-=" and match.group("word") is not None:
                return match.group("word")
            return match.group()
        return value

    return _VAR_START.sub(repl, text)


def _expand(form: str, strict: bool, ctx: _Ctx, variables: Mapping[str, str | None]) -> list[str]:
    """Tilde and variable expansion of one spelling. Unresolvable start → error when strict."""
    if form.startswith("~"):
        slash = form.find("/")
        name = form[1:] if slash < 0 else form[1:slash]
        home = ctx.user_home(name)
        if home is None:
            if strict and name == "-":
                raise ExtractionError(
                    f"path starts with {form[:2]!r} (previous directory is unknown)"
                )
            return [form]
        rest = "" if slash < 0 else form[slash:]
        reassigned = variables.get("HOME") if name == "" else None
        if reassigned and reassigned != home:
            # `HOME=/x; cat ~/y` reads /x/y: a shell's `~` follows $HOME.
            return [home + rest, reassigned + rest]
        form = home + rest
    elif form.startswith("$"):
        match = _VAR_START.match(form)
        if match is None:
            # `$(…)`, `${…` (malformed), `$'…'`, `$1`, `$$`: expansion syntax we cannot resolve.
            # Anything else after `$` (`$%48`, `$.`) is no expander's syntax: a literal name.
            if strict and form[1:2] in _EXPANSION_STARTS:
                raise ExtractionError(
                    f"path starts with an expansion that cannot be resolved: {form[:40]!r}"
                )
            return [form]
        name = match.group("braced") or match.group("bare")
        value = variables.get(name)
        op = match.group("op")
        if op and op[-1] == "+":
            value = match.group("word") if value is not None else ""
        elif value is None and op and op[-1] in "-=":
            value = match.group("word") or ""
            if value.startswith("~") or value.startswith("$"):
                return _expand(value + form[match.end() :], strict, ctx, variables)
        if value is None:
            if strict:
                raise ExtractionError(f"path starts with unresolvable variable ${name}")
            return [form]
        form = value + form[match.end() :]
    if "$" in form:
        substituted = _sub_known_vars(form, variables)
        if substituted != form:
            return [form, substituted]
    return [form]


# `unix:` URLs name a socket file (`docker -H unix:///var/run/docker.sock`, `curl --unix-socket`
# spellings, HTTP-over-socket clients): the socket is a path like any other.
_PATH_SCHEMES = frozenset({"file:", "unix:"})


def _file_url_path(url: str) -> list[str]:
    """Paths a `file:` URL may name: `file:///p`, `file://localhost/p`, `file:/p`, `file:p`.

    For `file://host/p` both `/p` (host ignored, as most libraries do for local access) and
    `host/p` (naive `removeprefix("file://")`) are returned.
    """
    rest = url[5:]
    for mark in ("?", "#"):
        cut = rest.find(mark)
        if cut >= 0:
            rest = rest[:cut]
    if rest[:2] in ("//", "\\\\", "/\\", "\\/"):
        after = rest[2:]
        slash = min((i for i in (after.find("/"), after.find("\\")) if i >= 0), default=-1)
        host = after if slash < 0 else after[:slash]
        path = "/" if slash < 0 else after[slash:]
        if host and host.lower() not in ("localhost", "127.0.0.1", "[::1]"):
            return [path, host + ("" if slash < 0 else after[slash:])]
        return [path]
    return [rest]


_DRIVE = re.compile(r"/?([A-Za-z]):[/\\]")


def _windows_drive(reading: str) -> str:
    """`C:\\Users\\bob\\.aws\\credentials`, `C:/Users/…`, `/C:/…` (from `file:///C:/…`) are absolute
    on any host: written as their WSL mount `/mnt/c/…`, never relative to the workspace."""
    match = _DRIVE.match(reading)
    if match is None:
        return reading
    rest = reading[match.end() :].replace("\\", "/")
    return f"/mnt/{match.group(1).lower()}/{rest}"


def _forms(
    raw: str, mode: int, ctx: _Ctx, variables: Mapping[str, str | None], depth: int = 0
) -> list[str]:
    """All spellings `raw` may be resolved to by some consumer, expanded, not yet normalised.

    Percent-decoding stages (a server may decode 0..n times) × {as written, backslashes as
    slashes (servers that normalise separators for Windows clients)} × file-URL unwrapping."""
    strict = mode == _M_STRICT
    stages = _decode_stages(raw) if "%" in raw else [raw]
    trimmed = _trim_path(raw)
    if trimmed != raw and trimmed:
        # Servers strip whitespace and surrounding quotes (the reference filesystem server does).
        stages = stages + [
            t for t in (_decode_stages(trimmed) if "%" in trimmed else [trimmed]) if t not in stages
        ]
    out: list[str] = []
    for index, stage in enumerate(stages):
        readings = [stage]
        if "\\" in stage and not (mode == _M_GENERIC and stage[0] == "\\"):
            readings.append(stage.replace("\\", "/"))
        for reading in readings:
            if (len(reading) > 2 and reading[1] == ":") or (
                reading[:1] == "/" and reading[2:3] == ":"
            ):
                reading = _windows_drive(reading)
            if "\x00" in reading:
                if strict:
                    raise ExtractionError("NUL byte in a path (percent-encoded)")
                reading = reading[: reading.index("\x00")]
                if not reading:
                    continue
            if reading[:5].lower() in _PATH_SCHEMES:
                if depth < 3:
                    for path in _file_url_path(reading):
                        sub_mode = mode if index == 0 else _M_SOFT
                        out.extend(
                            _forms(
                                path,
                                _M_SOFT if mode == _M_GENERIC else sub_mode,
                                ctx,
                                variables,
                                depth + 1,
                            )
                        )
                continue
            out.extend(_expand(reading, strict and index == 0, ctx, variables))
    if len(out) > 1:
        out = list(dict.fromkeys(out))
    return out


def _trim_path(raw: str) -> str:
    text = raw.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
        text = text[1:-1].strip()
    if text[:1] in ("'", '"') and text[1:2] in ("/", "~"):
        text = text[1:]
    if text[-1:] in ("'", '"'):
        text = text[:-1]
    return text


def _too_long(path: str) -> bool:
    if len(path) <= MAX_PATH_BYTES // 4:
        return False
    return len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES


class _PathOut:
    """Result of resolving one raw path value against one base: absolute canonical paths,
    un-normalised absolute spellings containing `..` (for physical realpath), and the relative
    spellings (for joining with directory-like arguments)."""

    __slots__ = ("paths", "phys", "relative")

    def __init__(
        self, paths: tuple[str, ...], phys: tuple[str, ...], relative: tuple[str, ...]
    ) -> None:
        self.paths = paths
        self.phys = phys
        self.relative = relative


def _resolve_path(
    raw: str, mode: int, base: str, ctx: _Ctx, variables: Mapping[str, str | None] | None = None
) -> _PathOut:
    """raw value → _PathOut. Memoised per environment for the default variables."""
    strict = mode == _M_STRICT
    key = None
    if variables is None:
        key = (raw, mode, base)
        hit: _PathOut | None = ctx.cache.get(key)
        if hit is not None:
            return hit
        variables = ctx.vars
    if strict and _too_long(raw):
        raise ExtractionError(f"path longer than {MAX_PATH_BYTES} bytes")
    paths: list[str] = []
    phys: list[str] = []
    relative: list[str] = []
    for form in _forms(raw, mode, ctx, variables) if raw else [""]:
        if form.startswith("/"):
            absolute = form
        else:
            relative.append(form)
            absolute = (base + "/" + form) if base != "/" else "/" + form
        for path in _normalise(absolute, ctx) if absolute else [base]:
            if _too_long(path):
                if strict:
                    raise ExtractionError(f"path longer than {MAX_PATH_BYTES} bytes")
                continue
            if path not in paths:
                paths.append(path)
        if ".." in absolute:
            phys.append(absolute)
    out = _PathOut(tuple(paths), tuple(phys), tuple(relative))
    if key is not None:
        ctx.memo(key, out)
    return out


_REAL_TTL_S = 1.0  # how long a resolution is trusted; documented in docs/language.md
_REAL_MAX = 8192
_real_cache: dict[str, tuple[float, str | None]] = {}
_monotonic = time.monotonic
_LINK, _PLAIN, _MISSING = 0, 1, 2
_UNCLEAN = re.compile(r"^(?!/.)|//|/\.\.?(?:/|$)|/$")  # not absolute, or `//`, `.`, `..`, `/` last


class Resolver:
    """`os.path.realpath` for the paths of one call, with its work bounded.

    The same walk as the standard library's (component by component, `..` lexical on what is
    resolved so far, symlinks followed, a loop left as it is), with two savings that do not
    change the result: an `lstat` is made once per call for each prefix (the paths of a tree
    share their directories), and none below a prefix that does not exist (nothing can). The
    components walked are counted across the call: past MAX_RESOLVE_STEPS the call is refused
    (a few thousand 2,000-component paths would otherwise take seconds of `lstat`s).
    """

    __slots__ = ("_dirs", "_kinds", "_targets", "steps")

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}  # clean lexical prefix → its resolution (no loop)
        self._kinds: dict[str, int] = {}
        self._targets: dict[str, str] = {}
        self.steps = 0

    def realpath(self, path: str) -> str | None:
        """The memoised resolution (one second), or None when the path cannot be resolved."""
        now = _monotonic()
        hit = _real_cache.get(path)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            if _UNCLEAN.search(path) is None:
                real: str | None = self._clean(path)
            else:
                real = os.path.normpath(self._join("", path, {})[0])
        except (OSError, ValueError):
            real = None
        if len(_real_cache) >= _REAL_MAX:
            _real_cache.clear()
        _real_cache[path] = (now + _REAL_TTL_S, real)
        return real

    def _clean(self, path: str) -> str:
        """A path with no empty, `.` or `..` component: its directory is resolved once per call
        (the walk of `_join` passes through the directory's resolution, so continuing from it
        with the last component gives the same result), then the last component."""
        parent, _, name = path.rpartition("/")
        base = self._dirs.get(parent) if parent else "/"
        if base is None:
            real, ok = self._join("", parent, {})
            if not ok:  # a symlink loop: the rest stays as it is, as realpath leaves it
                return os.path.normpath(os.path.join(real, name))
            base = self._dirs[parent] = real
        return os.path.normpath(self._join(base, name, {})[0])

    def _kind(self, path: str, parent: str) -> int:
        kind = self._kinds.get(path)
        if kind is None:
            if self._kinds.get(parent) == _MISSING:
                kind = _MISSING
            else:
                try:
                    st = os.lstat(path)
                except OSError:
                    kind = _MISSING
                else:
                    kind = _LINK if stat.S_ISLNK(st.st_mode) else _PLAIN
            self._kinds[path] = kind
        return kind

    def _join(self, path: str, rest: str, seen: dict[str, str | None]) -> tuple[str, bool]:
        """posixpath._joinrealpath (non-strict), with the lstat of `_kind`."""
        if rest.startswith("/"):
            rest = rest[1:]
            path = "/"
        while rest:
            self.steps += 1
            if self.steps > MAX_RESOLVE_STEPS:
                raise ExtractionError(
                    f"more than {MAX_RESOLVE_STEPS:,} path components to resolve in one call"
                )
            name, _, rest = rest.partition("/")
            if not name or name == ".":
                continue
            if name == "..":
                if path:
                    path, name = os.path.split(path)
                    if name == "..":
                        path = os.path.join(path, "..", "..")
                else:
                    path = ".."
                continue
            newpath = os.path.join(path, name)
            if self._kind(newpath, path) != _LINK:
                path = newpath
                continue
            if newpath in seen:
                cached = seen[newpath]
                if cached is not None:
                    path = cached
                    continue
                return os.path.join(newpath, rest), False  # a symlink loop
            seen[newpath] = None
            target = self._targets.get(newpath)
            if target is None:
                target = self._targets[newpath] = os.readlink(newpath)
            path, ok = self._join(path, target, seen)
            if not ok:
                return os.path.join(path, rest), False
            seen[newpath] = path
        return path, True


def _realpath(path: str) -> str | None:
    """os.path.realpath with a one-second memo: agents hit the same paths over and over, and
    a symlink swapped in under a path is re-read within a second. (The server opens the file
    after the decision anyway, so a check-then-use window exists with or without the memo.)"""
    hit = _real_cache.get(path)
    if hit is not None and hit[0] > _monotonic():  # without building a Resolver
        return hit[1]
    return Resolver().realpath(path)
