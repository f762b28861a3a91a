"""Facts from raw tool arguments — the security boundary of mcp-defense.

A prompt-injected agent writes the arguments of every `tools/call`. Rules never look at those
arguments directly; they see the normalised facts produced here (`CallFacts`). So the contract
of this module is one-sided: **a path, URL or host that a server could act on must appear in the
facts in canonical form, whatever its spelling**. Extra facts (a harmless relative path that was
really a word of prose) cost at most a needless approval; a missing fact is a bypass. Every
choice below leans that way, and anything that cannot be interpreted raises `ExtractionError`,
which the table turns into a deny (fail closed).

How a value is read depends on the *role* of the key it sits under (from the policy's
`classify` blocks, see `Classifier`):

* ``path``    — the whole string is a filesystem path (relative → workspace).
* ``url``     — the whole string is a URL; a bare ``host[:port][/path]`` gets ``https://``.
* ``command`` — a shell command line: lexed like bash, split into simple commands, recursed
  into ``bash -c``/``eval``/``$(...)``/heredocs, interpreter ``-c``/``-e`` code scanned.
* ``code``    — program text: string literals (and joins of adjacent literals) are values.
* ``text``    — prose/content: scanned for URLs only (it may be 16 MiB; no per-char Python).
* unknown     — anything that *looks* like a path, URL or IP literal is taken, anywhere in the
  string, and JSON inside strings is decoded and walked (servers may decode it).

Path spellings handled: ``~``, ``~user``, ``$HOME``/``${HOME}``/``$USER``/``$PWD``/``$TMPDIR``
(and XDG defaults), ``..``/``.``, repeated and trailing slashes, percent-encoding (repeatedly,
plus overlong UTF-8), backslashes (as a second reading), ``file:`` URLs in every form, the
``/proc/<pid>/{root,cwd}`` magic links (resolved *during* traversal, as the kernel does, so
``/proc/self/cwd/../../home/...`` lands in ``/home``), and optionally ``realpath``.

Known limits (the policy must compensate):
* Shell and program text is Turing-complete. Runtime-computed paths (``$(printf ...)``,
  base64-decoded scripts, unknown variables) cannot be seen statically; every command/code
  value sets ``spawns`` so a policy can gate execution itself.
* Glob patterns (``~/.s*/id_*``) stay literal unless ``resolve_symlinks`` allows filesystem
  access, in which case command words are also glob-expanded (bounded).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import glob as _glob
import json
import math
import os
import posixpath
import re
import sys
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from typing import Any
from urllib.parse import unquote

from .facts import CallFacts, ExtractionError
from .net import canonical_host, embedded_ipv4

__all__ = [
    "DEFAULT_KEYS",
    "DEFAULT_TOOLS",
    "EFFECTS",
    "ROLES",
    "Classifier",
    "Environment",
    "default_classifier",
    "extract",
]

EFFECTS = frozenset({"reads", "writes", "spawns", "network"})
ROLES = frozenset({"path", "url", "command", "code", "text"})

MAX_DEPTH = 64  # nesting of objects/arrays, counting JSON decoded out of strings
MAX_ITEMS = 100_000  # strings + keys visited per call
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
MAX_SHELL_TOKENS = 200_000
MAX_SHELL_NESTING = 16  # bash -c "bash -c ..." / $( $( ... ) )
MAX_BRACE_WORDS = 1024
MAX_CWDS = 8
MAX_ANCHORS = 8
MAX_RELATIVES = 4096
MAX_GLOB_MATCHES = 256
MAX_URLS = 20_000  # distinct URL words found in free text per call
_CACHE_LIMIT = 8192  # entries per bounded memo dict
_CACHEABLE_LEN = 512

# Effect bits (ints are cheaper than frozensets on the hot path).
_R, _W, _S, _N = 1, 2, 4, 8  # (_R | _W) == 3 is used inline on the hot path
_FLAG_OF = {"reads": _R, "writes": _W, "spawns": _S, "network": _N}

# How a raw value is read as a path. STRICT (path-role keys): an unresolvable `$VAR`/`~-` at the
# start or a decoded NUL is an error. SOFT (key name suggests a path, `file:` URLs, shell words):
# same readings, kept literally instead. GENERIC (a path-looking word in an unknown key): as SOFT,
# but a leading backslash is not read as `/` — in unknown keys that is a regex (`\.py$`), and
# reading it as the root would put `/.py$` outside every workspace.
_M_GENERIC, _M_STRICT, _M_SOFT = 0, 1, 2

# Role codes. _SOFT_PATH is a path role guessed from the key's name (`ssh_key_file`): read as a
# path, but without path-role strictness (an unknown $VAR there is kept literally).
_GENERIC, _PATH, _URL, _COMMAND, _CODE, _TEXT, _SOFT_PATH = range(7)
_ROLE_CODE = {"path": _PATH, "url": _URL, "command": _COMMAND, "code": _CODE, "text": _TEXT}
# When the policy gives one key two roles, the one that inspects most wins.
_ROLE_PRIORITY = {"command": 5, "code": 4, "path": 3, "url": 2, "text": 1}


def _flags(effects: Iterable[str]) -> int:
    bits = 0
    for effect in effects:
        try:
            bits |= _FLAG_OF[effect]
        except KeyError:
            raise ValueError(
                f"unknown effect {effect!r} (expected one of {sorted(EFFECTS)})"
            ) from None
    return bits


_SQUASH_RE = re.compile(r"[\s_.\-\u00ad\u200b-\u200f\u2060\ufeff]+")


def _squash(key: str) -> str:
    """Key spelling variants a lenient server might accept: `filePath`, `file-path`, `ＦＩＬＥ_ＰＡＴＨ`."""
    if not key.isascii():
        key = unicodedata.normalize("NFKC", key)
    return _SQUASH_RE.sub("", key.casefold())


_PATHISH_KEY_PARTS = ("path", "file", "dir", "folder")
_URLISH_KEYS = frozenset(
    {
        "url",
        "uri",
        "urls",
        "uris",
        "host",
        "hostname",
        "endpoint",
        "server",
        "domain",
        "href",
        "link",
        "webhook",
        "proxy",
        "remote",
        "baseurl",
        "apiurl",
        "address",
        "origin",
    }
)
_DIRISH_KEY_PARTS = (
    "cwd",
    "dir",
    "folder",
    "root",
    "base",
    "workdir",
    "chdir",
    "location",
    "parent",
    "prefix",
    "workspace",
    "home",
    "cd",
)
_ARGVISH_KEYS = frozenset({"args", "argv", "arguments", "params", "parameters"})


def _heuristic_role(squashed: str) -> int:
    """Role for a key the policy did not classify, guessed from its name (only ever stricter)."""
    if squashed in _URLISH_KEYS or squashed.endswith(("url", "uri")):
        return _URL
    if any(part in squashed for part in _PATHISH_KEY_PARTS):
        return _SOFT_PATH
    return _GENERIC


@dataclass(frozen=True, slots=True)
class Classifier:
    """The policy's `classify` blocks, compiled: tool-name effects and argument-key roles.

    Built once per policy by the compiler (`Classifier.build`); lookups are memoised in bounded
    private dicts because tool and key names repeat on every call.
    """

    tool_exact: Mapping[str, frozenset[str]] = field(default_factory=dict)
    tool_globs: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = ()
    key_roles: Mapping[str, str] = field(default_factory=dict)
    key_effects: Mapping[str, frozenset[str]] = field(default_factory=dict)
    _tool_bits: dict[str, int] = field(init=False, repr=False, compare=False)
    _glob_bits: tuple[tuple[re.Pattern[str], int], ...] = field(
        init=False, repr=False, compare=False
    )
    _roles: dict[str, int] = field(init=False, repr=False, compare=False)
    _roles_sq: dict[str, int] = field(init=False, repr=False, compare=False)
    _key_bits: dict[str, int] = field(init=False, repr=False, compare=False)
    _key_bits_sq: dict[str, int] = field(init=False, repr=False, compare=False)
    _tool_memo: dict[str, int] = field(init=False, repr=False, compare=False)
    _key_memo: dict[str, tuple[int, int, bool]] = field(init=False, repr=False, compare=False)
    _pair_memo: dict[tuple[Any, ...], _Pair] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tool_bits = {name.lower(): _flags(effects) for name, effects in self.tool_exact.items()}
        glob_bits = tuple((pattern, _flags(effects)) for pattern, effects in self.tool_globs)
        roles: dict[str, int] = {}
        roles_sq: dict[str, int] = {}
        for key, role in self.key_roles.items():
            if role not in _ROLE_CODE:
                raise ValueError(
                    f"unknown key role {role!r} for {key!r} (expected one of {sorted(ROLES)})"
                )
            for table, name in ((roles, key.lower()), (roles_sq, _squash(key))):
                old = table.get(name)
                if old is None or _ROLE_PRIORITY[role] > _ROLE_PRIORITY[_role_name(old)]:
                    table[name] = _ROLE_CODE[role]
        key_bits: dict[str, int] = {}
        key_bits_sq: dict[str, int] = {}
        for key, effects in self.key_effects.items():
            bits = _flags(effects)
            key_bits[key.lower()] = key_bits.get(key.lower(), 0) | bits
            key_bits_sq[_squash(key)] = key_bits_sq.get(_squash(key), 0) | bits
        object.__setattr__(self, "_tool_bits", tool_bits)
        object.__setattr__(self, "_glob_bits", glob_bits)
        object.__setattr__(self, "_roles", roles)
        object.__setattr__(self, "_roles_sq", roles_sq)
        object.__setattr__(self, "_key_bits", key_bits)
        object.__setattr__(self, "_key_bits_sq", key_bits_sq)
        object.__setattr__(self, "_tool_memo", {})
        object.__setattr__(self, "_key_memo", {})
        object.__setattr__(self, "_pair_memo", {})

    @staticmethod
    def build(
        tools: Sequence[tuple[Sequence[str], Iterable[str]]],
        keys: Sequence[tuple[Sequence[str], str | None, Iterable[str]]],
    ) -> Classifier:
        """Compile `classify` entries. Patterns with `*?[` are fnmatch globs, others exact names.

        Names are case-insensitive. A key given two roles keeps the most inspecting one
        (command > code > path > url > text) so that merging policy files can never downgrade
        a key to "text" by accident.
        """
        exact: dict[str, frozenset[str]] = {}
        globs: list[tuple[re.Pattern[str], frozenset[str]]] = []
        for patterns, effects in tools:
            eff = frozenset(effects)
            _flags(eff)
            for pattern in [patterns] if isinstance(patterns, str) else patterns:
                name = pattern.lower()
                if any(ch in name for ch in "*?["):
                    globs.append((re.compile(fnmatch.translate(name)), eff))
                else:
                    exact[name] = exact.get(name, frozenset()) | eff
        roles: dict[str, str] = {}
        key_effects: dict[str, frozenset[str]] = {}
        for names, role, effects in keys:
            eff = frozenset(effects)
            for name in [names] if isinstance(names, str) else names:
                key = name.lower()
                if role is not None:
                    if role not in _ROLE_CODE:
                        raise ValueError(f"unknown key role {role!r} for {name!r}")
                    old = roles.get(key)
                    if old is None or _ROLE_PRIORITY[role] > _ROLE_PRIORITY[old]:
                        roles[key] = role
                if eff:
                    key_effects[key] = key_effects.get(key, frozenset()) | eff
        return Classifier(exact, tuple(globs), roles, key_effects)

    def tool_flags(self, tool: str) -> int:
        """Effect bits for a tool name (memoised). `mcp__server__tool` also matches `tool`."""
        bits = self._tool_memo.get(tool)
        if bits is not None:
            return bits
        names = [tool.lower()]
        if names[0].startswith("mcp__") and names[0].count("__") >= 2:
            names.append(names[0].split("__", 2)[2])
        bits = 0
        for name in names:
            bits |= self._tool_bits.get(name, 0)
            for pattern, effect in self._glob_bits:
                if pattern.match(name):
                    bits |= effect
        if len(self._tool_memo) >= _CACHE_LIMIT:
            self._tool_memo.clear()
        self._tool_memo[tool] = bits
        return bits

    def key_info(self, key: str) -> tuple[int, int, bool]:
        """(role code, effect bits, directory-like) for an argument key (memoised)."""
        hit = self._key_memo.get(key)
        if hit is not None:
            return hit
        low = key.lower()
        role = self._roles.get(low)
        bits = self._key_bits.get(low)
        squashed = _squash(key)
        if role is None:
            role = self._roles_sq.get(squashed)
        if bits is None:
            bits = self._key_bits_sq.get(squashed, 0)
        if role is None:
            role = _heuristic_role(squashed)
        dirish = role in (_PATH, _SOFT_PATH) and any(p in squashed for p in _DIRISH_KEY_PARTS)
        hit = (role, bits, dirish)
        if len(self._key_memo) >= _CACHE_LIMIT:
            self._key_memo.clear()
        self._key_memo[key] = hit
        return hit


def _role_name(code: int) -> str:
    for name, value in _ROLE_CODE.items():
        if value == code:
            return name
    return "text"


# A sensible starting point for policies that do not classify everything themselves. The
# compiler may merge these under the policy's own `classify` blocks.
DEFAULT_TOOLS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        (
            "read_*",
            "*_read",
            "get_file*",
            "view_*",
            "cat",
            "head",
            "tail",
            "list_*",
            "search_*",
            "find_*",
            "grep*",
            "glob",
            "directory_tree",
            "get_*_info",
            "*read_file*",
        ),
        ("reads",),
    ),
    (
        (
            "write_*",
            "*_write",
            "edit_*",
            "create_*",
            "delete_*",
            "remove_*",
            "move_*",
            "rename_*",
            "copy_*",
            "append_*",
            "patch*",
            "upload*",
            "mkdir*",
            "save_*",
            "put_*",
            "*write_file*",
            "*edit_file*",
            "str_replace*",
            "insert_*",
            "notebookedit",
            "multiedit",
        ),
        ("writes",),
    ),
    (
        (
            "run_*",
            "exec*",
            "*shell*",
            "*bash*",
            "*terminal*",
            "*command*",
            "execute_*",
            "spawn*",
            "*_exec",
            "eval*",
            "*python*",
            "*repl*",
            "*notebook*execute*",
        ),
        ("spawns",),
    ),
    (
        (
            "fetch*",
            "http*",
            "*request*",
            "browse*",
            "navigate*",
            "download*",
            "*curl*",
            "web_*",
            "*_url",
            "*webhook*",
            "*search_web*",
            "git_clone",
            "git_push",
            "git_pull",
            "git_fetch",
        ),
        ("network",),
    ),
)
DEFAULT_KEYS: tuple[tuple[tuple[str, ...], str | None, tuple[str, ...]], ...] = (
    (
        (
            "path",
            "paths",
            "file",
            "files",
            "filename",
            "file_name",
            "filepath",
            "file_path",
            "filenames",
            "source",
            "src",
            "destination",
            "dest",
            "dst",
            "target_path",
            "dir",
            "directory",
            "dirname",
            "folder",
            "cwd",
            "workdir",
            "working_dir",
            "working_directory",
            "root",
            "old_path",
            "new_path",
            "notebook_path",
            "image_path",
            "output_path",
            "input_path",
            "repo_path",
            "source_path",
            "destination_path",
        ),
        "path",
        (),
    ),
    (
        (
            "url",
            "urls",
            "uri",
            "href",
            "link",
            "endpoint",
            "host",
            "hostname",
            "server",
            "domain",
            "base_url",
            "api_url",
            "webhook",
            "webhook_url",
            "remote",
            "repo_url",
            "repository_url",
            "proxy",
        ),
        "url",
        (),
    ),
    (
        (
            "command",
            "cmd",
            "commands",
            "shell",
            "bash",
            "shell_command",
            "command_line",
            "commandline",
            "cmdline",
        ),
        "command",
        ("spawns",),
    ),
    (
        (
            "code",
            "python",
            "javascript",
            "js",
            "source_code",
            "snippet",
            "script",
            "program",
            "expression",
        ),
        "code",
        ("spawns",),
    ),
    (
        (
            "content",
            "contents",
            "text",
            "body",
            "message",
            "prompt",
            "description",
            "title",
            "comment",
            "old_text",
            "new_text",
            "old_string",
            "new_string",
            "oldtext",
            "newtext",
            "summary",
            "note",
            "notes",
            "query",
            "question",
            "answer",
            "commit_message",
        ),
        "text",
        (),
    ),
)


_DEFAULT_CLASSIFIER: Classifier | None = None


def default_classifier() -> Classifier:
    """`Classifier.build(DEFAULT_TOOLS, DEFAULT_KEYS)`, built once."""
    global _DEFAULT_CLASSIFIER
    if _DEFAULT_CLASSIFIER is None:
        _DEFAULT_CLASSIFIER = Classifier.build(DEFAULT_TOOLS, DEFAULT_KEYS)
    return _DEFAULT_CLASSIFIER


@dataclass(frozen=True, slots=True)
class Environment:
    """Per-runtime constants the facts depend on.

    `workspace` is where relative paths land (the server's cwd); `home`/`user` expand `~` and
    `$HOME`. With `resolve_symlinks` the extractor may touch the filesystem: it adds
    `os.path.realpath` of each path (and of the raw spelling, so `link/..` is resolved
    physically) and glob-expands shell words, as bash would.
    """

    workspace: str
    home: str
    user: str = ""
    resolve_symlinks: bool = True

    def __post_init__(self) -> None:
        for name in ("workspace", "home"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
                raise ValueError(
                    f"Environment.{name} must be an absolute POSIX path, got {value!r}"
                )


# ---------------------------------------------------------------------------------------------
# Per-environment context (expansion tables and memo caches)
# ---------------------------------------------------------------------------------------------

_USERNAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\$?\Z")


class _Ctx:
    """Everything derived from one Environment, plus that environment's memo caches."""

    __slots__ = (
        "cache",
        "home",
        "home_parent",
        "resolve",
        "url_cache",
        "user",
        "vars",
        "workspace",
        "ws_parts",
    )

    def __init__(self, env: Environment) -> None:
        self.workspace = _lexical(env.workspace)
        self.home = _lexical(env.home)
        self.user = env.user
        self.resolve = env.resolve_symlinks
        parent = posixpath.dirname(self.home)
        self.home_parent = parent if parent in ("/home", "/Users", "/usr/home") else "/home"
        self.ws_parts = [p for p in self.workspace.split("/") if p]
        home = self.home
        self.vars: dict[str, str | None] = {
            "HOME": home,
            "USER": env.user or None,
            "LOGNAME": env.user or None,
            "PWD": self.workspace,
            "TMPDIR": "/tmp",
            "TMP": "/tmp",
            "TEMP": "/tmp",
            "XDG_CONFIG_HOME": home + "/.config",
            "XDG_DATA_HOME": home + "/.local/share",
            "XDG_CACHE_HOME": home + "/.cache",
            "XDG_STATE_HOME": home + "/.local/state",
        }
        self.cache: dict[Any, Any] = {}
        self.url_cache: dict[tuple[str, str | None], _UrlOut] = {}

    def user_home(self, name: str) -> str | None:
        """`~name` → that user's home; None when `name` is not a user name we can place."""
        if name == "":
            return self.home
        if name == "+":
            return self.workspace
        if not _USERNAME_RE.match(name):
            return None
        if name == self.user:
            return self.home
        if name == "root":
            return "/root"
        return f"{self.home_parent}/{name}"

    def memo(self, key: Any, value: Any) -> None:
        cache = self.cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value


_LAST_CTX: tuple[Environment, _Ctx] | None = None
_CTXS: dict[Environment, _Ctx] = {}


def _ctx_for(env: Environment) -> _Ctx:
    global _LAST_CTX
    last = _LAST_CTX
    if last is not None and last[0] is env:
        return last[1]
    ctx = _CTXS.get(env)
    if ctx is None:
        if len(_CTXS) >= 64:
            _CTXS.clear()
        ctx = _CTXS[env] = _Ctx(env)
    _LAST_CTX = (env, ctx)
    return ctx


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
            if "\x00" in reading:
                if strict:
                    raise ExtractionError("NUL byte in a path (percent-encoded)")
                reading = reading[: reading.index("\x00")]
                if not reading:
                    continue
            if reading[:5].lower() == "file:":
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
        hit = ctx.cache.get(key)
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


def _realpath(path: str) -> str | None:
    """os.path.realpath with a one-second memo: agents hit the same paths over and over, and
    a symlink swapped in under a path is re-read within a second. (The server opens the file
    after the decision anyway, so a check-then-use window exists with or without the memo.)"""
    now = _monotonic()
    hit = _real_cache.get(path)
    if hit is not None and hit[0] > now:
        return hit[1]
    try:
        real: str | None = os.path.realpath(path)
    except (OSError, ValueError):
        real = None
    if len(_real_cache) >= _REAL_MAX:
        _real_cache.clear()
    _real_cache[path] = (now + _REAL_TTL_S, real)
    return real


# ---------------------------------------------------------------------------------------------
# URLs and hosts
# ---------------------------------------------------------------------------------------------

_SPECIAL_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
_DEFAULT_PORTS = {
    **_SPECIAL_PORTS,
    "ssh": 22,
    "sftp": 22,
    "scp": 22,
    "git+ssh": 22,
    "ssh+git": 22,
    "git": 9418,
    "git+https": 443,
    "git+http": 80,
    "rsync": 873,
    "telnet": 23,
    "gopher": 70,
    "ldap": 389,
    "ldaps": 636,
    "smtp": 25,
    "smtps": 465,
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "redis": 6379,
    "rediss": 6379,
    "postgres": 5432,
    "postgresql": 5432,
    "mysql": 3306,
    "mariadb": 3306,
    "mongodb": 27017,
    "amqp": 5672,
    "amqps": 5671,
    "mqtt": 1883,
    "mqtts": 8883,
    "irc": 6667,
    "ircs": 6697,
    "rtsp": 554,
    "dns": 53,
    "nntp": 119,
    "svn": 3690,
    "svn+ssh": 22,
    "ftps": 990,
    "tftp": 69,
    "smb": 445,
    "nfs": 2049,
    "socks": 1080,
    "socks4": 1080,
    "socks4a": 1080,
    "socks5": 1080,
    "socks5h": 1080,
    "grpc": 443,
    "h2": 443,
    "http2": 443,
    "s3": 443,
    "memcached": 11211,
    "vnc": 5900,
    "rdp": 3389,
    "sip": 5060,
    "xmpp": 5222,
    "ipfs": 443,
}
_OPAQUE_SCHEMES = frozenset(
    {
        "mailto",
        "data",
        "javascript",
        "tel",
        "urn",
        "about",
        "blob",
        "sms",
        "geo",
        "magnet",
        "news",
        "cid",
        "mid",
        "xmpp",
    }
)
_KNOWN_SCHEMES = frozenset(_DEFAULT_PORTS) | _OPAQUE_SCHEMES | {"file"}
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_C0_SPACE = "".join(chr(i) for i in range(0x21))
_AUTH_END_SPECIAL = re.compile(r"[/?#\\]")
_AUTH_END_PLAIN = re.compile(r"[/?#]")
_HOST_OK = re.compile(r"[a-z0-9_~\-]+(?:\.[a-z0-9_~\-]+)*\.?|[0-9a-f:.]+")
_HOST_SPLIT = re.compile(r"[^a-z0-9_~\-.:]+")


@lru_cache(maxsize=16384)
def _clean_hosts(raw: str) -> tuple[str, ...]:
    """Canonical host(s) from an authority's host part; junk around a name is cut away."""
    if not raw:
        return ()
    host = canonical_host(raw)
    if not host:
        return ()
    if _HOST_OK.fullmatch(host):
        return (host,)
    out: list[str] = []
    for piece in _HOST_SPLIT.split(host):
        if piece and piece.strip(".:"):
            canon = canonical_host(piece.strip(":"))
            if canon and _HOST_OK.fullmatch(canon) and canon not in out:
                out.append(canon)
    return tuple(out)


def _split_hostport(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return hostport, ""
        after = hostport[end + 1 :]
        return hostport[: end + 1], after[1:] if after.startswith(":") else ""
    host, _, port = hostport.partition(":")
    return host, port


def _port(text: str, scheme: str) -> int | None:
    if not text:
        return _DEFAULT_PORTS.get(scheme)
    if text.isascii() and text.isdigit() and len(text) <= 8:
        value = int(text)
        if value <= 65535:
            return value
    return None


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _UrlOut:
    __slots__ = ("endpoints", "file", "hosts", "urls")

    def __init__(self) -> None:
        self.urls: Sequence[str] = ()
        self.hosts: Sequence[str] = ()
        self.endpoints: Sequence[str] = ()
        self.file: str | None = None


_EMPTY_URL = _UrlOut()


def _parse_url(text: str, default_scheme: str | None) -> _UrlOut:
    """Parse leniently (WHATWG special-scheme rules plus RFC 3986 readings).

    Several parsers disagree on `http://a\\@b/` (WHATWG: host a; RFC 3986/urllib: host b), so
    hosts from both readings are reported; the URL string uses the WHATWG one.
    """
    t = text.strip(_C0_SPACE)
    if "\t" in t or "\n" in t or "\r" in t:
        t = t.replace("\t", "").replace("\n", "").replace("\r", "")
    match = _SCHEME_RE.match(t)
    scheme = match.group(1).lower() if match else ""
    if match and (default_scheme is None or "://" in t or scheme in _KNOWN_SCHEMES):
        rest = t[match.end() :]
    elif default_scheme is not None:
        scheme = default_scheme
        rest = t[2:] if t[:2] in ("//", "\\\\") else t
        rest = "//" + rest
    else:
        return _EMPTY_URL
    out = _UrlOut()
    if scheme == "file":
        out.file = t
        return out
    special = scheme in _SPECIAL_PORTS
    if special:
        rest = rest.lstrip("/\\")
    elif rest[:2] in ("//", "\\\\", "/\\", "\\/"):
        rest = rest[2:]
    else:
        return out  # opaque: mailto:, data:, urn:
    cut = _AUTH_END_SPECIAL.search(rest)
    authority = rest if cut is None else rest[: cut.start()]
    authority_plain = authority
    if "\\" in rest:
        cut_plain = _AUTH_END_PLAIN.search(rest)
        authority_plain = rest if cut_plain is None else rest[: cut_plain.start()]
    host_port, out.hosts, out.endpoints = _authority_facts(scheme, authority, authority_plain)
    if host_port is not None:
        path = rest[len(authority) :]
        hash_at = path.find("#")
        if hash_at >= 0:
            path = path[:hash_at]
        if special:
            path = path.replace("\\", "/")
            if not path.startswith("/"):
                path = "/" + path
        out.urls = [f"{scheme}://{host_port}{path}"]
    return out


@lru_cache(maxsize=16384)
def _authority_facts(
    scheme: str, authority: str, authority_plain: str
) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """(`host:port` for the URL string, hosts, endpoints) of one authority — memoised, because
    text with thousands of URLs usually names a handful of hosts."""
    host_port: str | None = None
    hosts: list[str] = []
    endpoints: list[str] = []
    for index, auth in enumerate(
        (authority, authority_plain) if authority_plain != authority else (authority,)
    ):
        host_raw, port_raw = _split_hostport(auth.rpartition("@")[2])
        port = _port(port_raw, scheme)
        for host in _clean_hosts(host_raw):
            if index == 0 and host_port is None:
                host_port = _host_text(host) + (f":{port}" if port is not None else "")
            inner = embedded_ipv4(host) if ":" in host else ""
            for h in (host, inner) if inner else (host,):
                if h not in hosts:
                    hosts.append(h)
                if port is not None:
                    endpoint = f"{_host_text(h)}:{port}"
                    if endpoint not in endpoints:
                        endpoints.append(endpoint)
    return host_port, tuple(hosts), tuple(endpoints)


def _url_facts(text: str, default_scheme: str | None, ctx: _Ctx, memo: bool = True) -> _UrlOut:
    if not memo or len(text) > _CACHEABLE_LEN:
        return _parse_url(text, default_scheme)
    key = (text, default_scheme)
    cache = ctx.url_cache
    hit = cache.get(key)
    if hit is None:
        hit = _parse_url(text, default_scheme)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = hit
    return hit


_COLON_SLASH = re.compile(r":[/\\]")
_URL_STOP = re.compile(r"[\s\"'<>`]")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_TRAIL_PUNCT = ".,;:!?'\")]}>*"
_SPECIAL_NOSLASH = re.compile(r"[ \t\r\n]*(?:https?|wss?|ftp):(?![/\\])[^\s]", re.I)


def _embedded_urls(text: str, pattern: re.Pattern[str] = _COLON_SLASH) -> list[str]:
    """`scheme:/…` or `scheme:\\…` words anywhere in `text` (C-speed search, no per-char loop)."""
    out: list[str] = []
    pos = 0
    search = pattern.search
    while True:
        match = search(text, pos)
        if match is None:
            return out
        colon = match.start()
        start = colon
        low = max(0, colon - 40)
        while start > low and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        while start < colon and not text[start].isalpha():
            start += 1
        stop = _URL_STOP.search(text, colon)
        end = len(text) if stop is None else stop.start()
        pos = max(end, colon + 2)
        if start == colon:
            continue
        word = text[start:end]
        if word.endswith(tuple(_TRAIL_PUNCT)):
            word = _trim_trailing(word)
        out.append(word)


_SIMPLE_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#\\@\s%\t]+)([/?#][^\\\t\n\r]*)?\Z")
_SIMPLE_SCHEMES = frozenset(_SPECIAL_PORTS)  # their path rules are the simple ones
_FAST_BODY = re.compile(r"://([^\s\"'<>`:]*(?::(?!//)[^\s\"'<>`:]*)*)")
_FAST_SCHEME_REV = re.compile(r"//:([A-Za-z0-9+.\-]*)")
_RARE_SLASH = re.compile(r":(?:\\|/(?!/))")
_BIG_TEXT = 1 << 20
_MANY_URLS = 50_000  # above this many `://`, pair schemes and bodies with C scans instead


def _embedded_urls_big(text: str) -> list[str]:
    """`_embedded_urls` for megabytes of text: the per-occurrence work is done by C regex
    scans (bodies forwards, schemes on the reversed text, paired by position) and only the
    *distinct* URLs reach Python. Falls back to the simple scanner if the pairing is unsure."""
    bodies = _FAST_BODY.findall(text)
    if not bodies:
        return _embedded_urls(text, _RARE_SLASH) if _RARE_SLASH.search(text) else []
    schemes = _FAST_SCHEME_REV.findall(text[::-1])
    if len(schemes) != len(bodies):
        return _embedded_urls(text)
    pairs = set(zip(reversed(schemes), bodies, strict=True))
    if len(pairs) > MAX_URLS:
        raise ExtractionError(f"more than {MAX_URLS} distinct URLs in one call")
    out: list[str] = []
    for scheme_rev, body in pairs:
        scheme = scheme_rev[::-1][-40:]
        start = 0
        while start < len(scheme) and not scheme[start].isalpha():
            start += 1
        if start == len(scheme):
            continue
        word = scheme[start:] + "://" + body
        if word.endswith(tuple(_TRAIL_PUNCT)):
            word = _trim_trailing(word)
        out.append(word)
    out.sort()  # deterministic order for set-derived results
    if _RARE_SLASH.search(text):
        out.extend(_embedded_urls(text, _RARE_SLASH))
    return out


def _trim_trailing(word: str) -> str:
    while word and word[-1] in _TRAIL_PUNCT:
        last = word[-1]
        if last == ")" and word.count("(") >= word.count(")"):
            break
        if last == "]" and word.count("[") >= word.count("]"):
            break
        word = word[:-1]
    return word


# ---------------------------------------------------------------------------------------------
# Generic (unknown-key) value scanning
# ---------------------------------------------------------------------------------------------

_STRONG_PREFIXES = (
    "/",
    "~",
    "./",
    "../",
    "$HOME",
    "${HOME",
    "file:",
    "FILE:",
    "File:",
    ".\\",
    "..\\",
)
_TOKEN_HINT = re.compile(r"[/\\]|%(?:2[fF]|5[cC]|25)")
_TOKEN_SEPS = " \t\n\r\f\v\"'`<>|;&(){}"
_TOKEN_STOP = re.compile(r"[\s\"'`<>|;&(){}]")
_TOKEN_BODY_REV = re.compile(r"[^\s\"'`<>|;&(){}]*")
_PIECE_SPLIT = re.compile(r"[=,@:]")
_OPTION_NAME = re.compile(r"-+[A-Za-z0-9_]*")
_BRACED_VAR_TAIL = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:[:\-=+?][^{}]*)?\}\Z")
_BARE_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\Z")
_BARE_IPV6 = re.compile(
    r"\[[0-9A-Fa-f:.]+(?:%[^\]]*)?\](?::\d{1,5})?\Z|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\Z"
)
_BARE_HOSTPORT = re.compile(r"([A-Za-z0-9-]*[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*):(\d{1,5})\Z")
_WS = re.compile(r"\s")


def _looks_pathy(value: str) -> bool:
    return value.startswith(_STRONG_PREFIXES) or "/" in value or "\\" in value


# ---------------------------------------------------------------------------------------------
# Shell lexing (bash subset, exact where it matters for hiding words)
# ---------------------------------------------------------------------------------------------


class _Word:
    """One shell word: quotes removed, escapes applied, `$…` expansions left as written.
    `subs` are bodies of `$(…)`, backticks and `<(…)`/`>(…)`, analysed as commands."""

    __slots__ = ("quoted", "subs", "text")

    def __init__(self, text: str, subs: list[str], quoted: bool) -> None:
        self.text = text
        self.subs = subs
        self.quoted = quoted


class _Heredoc:
    __slots__ = ("body", "delim", "strip")

    def __init__(self, delim: str, strip: bool) -> None:
        self.delim = delim
        self.strip = strip
        self.body = ""


_PLAIN = re.compile(r"[^ \t\n\\'\"$`;&|<>()]+")
_DQ_PLAIN = re.compile(r'[^"\\$`]+')
_PAREN_PLAIN = re.compile(r"[^\\'\"`()]+")
_OP3 = frozenset({"<<<", "<<-", ";;&", "&>>"})
_OP2 = frozenset({"&&", "||", ";;", ";&", "|&", "<<", ">>", "&>", "<&", ">&", "<>", ">|"})
_OP_CHARS = frozenset(";&|<>()\n")
_FD_VAR = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}\Z")
_ANSI_ESC = re.compile(
    r"\\(x[0-9A-Fa-f]{1,2}|u[0-9A-Fa-f]{1,4}|U[0-9A-Fa-f]{1,8}|[0-7]{1,3}|c.|.)", re.S
)
_ANSI_SIMPLE = {
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}


def _ansi_c(body: str) -> str:
    """Decode bash `$'…'` escapes; bash truncates the word at a NUL."""

    def repl(match: re.Match[str]) -> str:
        esc = match.group(1)
        head = esc[0]
        try:
            if head == "x":
                return chr(int(esc[1:], 16))
            if head in "uU":
                return _safe_chr(int(esc[1:], 16))
            if head in "01234567":
                return chr(int(esc, 8) & 0xFF)
            if head == "c" and len(esc) == 2:
                return chr(ord(esc[1]) & 0x1F)
        except ValueError:
            return esc
        return _ANSI_SIMPLE.get(head, "\\" + esc)

    text = _ANSI_ESC.sub(repl, body)
    nul = text.find("\x00")
    return text if nul < 0 else text[:nul]


def _safe_chr(value: int) -> str:
    if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
        return "\ufffd"
    return chr(value)


def _match_paren(s: str, i: int) -> int:
    """Index of the `)` closing a `(` whose body starts at i, or -1 (quotes/escapes honoured)."""
    depth = 1
    n = len(s)
    while i < n:
        m = _PAREN_PLAIN.match(s, i)
        if m:
            i = m.end()
            if i >= n:
                break
        c = s[i]
        if c == "\\":
            i += 2
        elif c == "'":
            j = s.find("'", i + 1)
            i = n if j < 0 else j + 1
        elif c == '"':
            i = _skip_dq(s, i + 1)
        elif c == "`":
            j = _find_backtick(s, i + 1)
            i = n if j < 0 else j + 1
        elif c == "(":
            depth += 1
            i += 1
        else:  # ")"
            depth -= 1
            if depth == 0:
                return i
            i += 1
    return -1


def _skip_dq(s: str, i: int) -> int:
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        elif c == "$" and s.startswith("$(", i):
            end = _match_paren(s, i + 2)
            i = n if end < 0 else end + 1
        else:
            i += 1
    return n


def _find_backtick(s: str, i: int) -> int:
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
        elif c == "`":
            return i
        else:
            i += 1
    return -1


def _match_brace(s: str, i: int) -> int:
    depth = 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


class _Lexer:
    """A bash-like lexer that never drops text: unbalanced quotes close at end of input."""

    __slots__ = ("bad", "n", "s")

    def __init__(self, s: str) -> None:
        self.s = s
        self.n = len(s)
        self.bad = False

    def tokens(self) -> list[object]:
        s, n = self.s, self.n
        toks: list[object] = []
        pending: list[_Heredoc] = []
        i = 0
        while i < n:
            c = s[i]
            if c in " \t":
                i += 1
                continue
            if c == "\\" and s.startswith("\\\n", i):
                i += 2
                continue
            if c == "\n":
                toks.append("\n")
                i += 1
                if pending:
                    i = self._heredoc_bodies(i, pending)
                    pending = []
                continue
            if c == "#":
                j = s.find("\n", i)
                i = n if j < 0 else j
                continue
            if c in "<>" and i + 1 < n and s[i + 1] == "(":
                end = _match_paren(s, i + 2)
                if end < 0:
                    self.bad = True
                    end = n
                toks.append(_Word("/dev/fd/63", [s[i + 2 : end]], False))
                i = end + 1
                continue
            if c in _OP_CHARS:
                op = s[i : i + 3]
                if op not in _OP3:
                    op = s[i : i + 2]
                    if op not in _OP2:
                        op = c
                i += len(op)
                toks.append(op)
                if op == "<<" or op == "<<-":
                    while i < n and s[i] in " \t":
                        i += 1
                    word, i = self._word(i)
                    doc = _Heredoc(word.text, op == "<<-")
                    toks.append(doc)
                    pending.append(doc)
                continue
            word, i = self._word(i)
            if (
                i < n
                and s[i] in "<>"
                and not word.quoted
                and (word.text.isdigit() or _FD_VAR.match(word.text))
            ):
                continue  # `2>file`, `{fd}>file`: an fd number, not an argument
            toks.append(word)
        if pending:  # heredoc never terminated by a newline: no body
            self.bad = True
        return toks

    def _heredoc_bodies(self, i: int, pending: list[_Heredoc]) -> int:
        s = self.s
        for doc in pending:
            pattern = re.compile(
                r"^" + (r"\t*" if doc.strip else "") + re.escape(doc.delim) + r"$", re.M
            )
            match = pattern.search(s, i)
            if match is None:
                self.bad = True
                doc.body = s[i:]
                return self.n
            doc.body = s[i : match.start()]
            i = match.end() + 1
        return min(i, self.n)

    def _word(self, i: int) -> tuple[_Word, int]:
        s, n = self.s, self.n
        buf: list[str] = []
        subs: list[str] = []
        quoted = False
        while i < n:
            m = _PLAIN.match(s, i)
            if m:
                buf.append(m.group())
                i = m.end()
                if i >= n:
                    break
            c = s[i]
            if c in " \t\n;&|<>()":
                break
            if c == "\\":
                if i + 1 < n:
                    if s[i + 1] != "\n":
                        buf.append(s[i + 1])
                        quoted = True
                i += 2
            elif c == "'":
                j = s.find("'", i + 1)
                if j < 0:
                    self.bad = True
                    j = n
                buf.append(s[i + 1 : j])
                i = j + 1
                quoted = True
            elif c == '"':
                i = self._dq(i + 1, buf, subs)
                quoted = True
            elif c == "$":
                i = self._dollar(i, buf, subs)
                if buf and buf[-1] is _QUOTED_MARK:
                    buf.pop()
                    quoted = True
            elif c == "`":
                j = _find_backtick(s, i + 1)
                if j < 0:
                    self.bad = True
                    j = n
                body = s[i + 1 : j].replace("\\`", "`").replace("\\$", "$").replace("\\\\", "\\")
                subs.append(body)
                buf.append("`" + body + "`")
                i = j + 1
            else:  # pragma: no cover - _PLAIN consumed everything else
                buf.append(c)
                i += 1
        return _Word("".join(buf), subs, quoted), i

    def _dq(self, i: int, buf: list[str], subs: list[str]) -> int:
        s, n = self.s, self.n
        while i < n:
            m = _DQ_PLAIN.match(s, i)
            if m:
                buf.append(m.group())
                i = m.end()
                if i >= n:
                    break
            c = s[i]
            if c == '"':
                return i + 1
            if c == "\\":
                nxt = s[i + 1] if i + 1 < n else ""
                if nxt in ("$", "`", '"', "\\"):
                    buf.append(nxt)
                    i += 2
                elif nxt == "\n":
                    i += 2
                else:
                    buf.append("\\")
                    i += 1
            elif c == "$":
                if s.startswith("$'", i) or s.startswith('$"', i):
                    buf.append("$")
                    i += 1
                else:
                    i = self._dollar(i, buf, subs)
                    if buf and buf[-1] is _QUOTED_MARK:
                        buf.pop()
            else:  # backtick
                j = _find_backtick(s, i + 1)
                if j < 0:
                    self.bad = True
                    j = n
                body = s[i + 1 : j].replace("\\`", "`").replace("\\$", "$").replace("\\\\", "\\")
                subs.append(body)
                buf.append("`" + body + "`")
                i = j + 1
        self.bad = True
        return n

    def _dollar(self, i: int, buf: list[str], subs: list[str]) -> int:
        s, n = self.s, self.n
        nxt = s[i + 1] if i + 1 < n else ""
        if nxt == "'":
            j = i + 2
            while j < n:
                if s[j] == "\\":
                    j += 2
                    continue
                if s[j] == "'":
                    break
                j += 1
            if j >= n:
                self.bad = True
            buf.append(_ansi_c(s[i + 2 : min(j, n)]))
            buf.append(_QUOTED_MARK)
            return j + 1
        if nxt == '"':
            end = self._dq(i + 2, buf, subs)
            buf.append(_QUOTED_MARK)
            return end
        if nxt == "(":
            if s.startswith("$((", i):
                end = _match_paren(s, i + 3)
                if end < 0:
                    self.bad = True
                    buf.append(s[i:])
                    return n
                close = end + 1 if end + 1 < n and s[end + 1] == ")" else end
                body = s[i + 3 : end]
                if "$(" in body or "`" in body:
                    subs.append(body)
                buf.append(s[i : close + 1])
                return close + 1
            end = _match_paren(s, i + 2)
            if end < 0:
                self.bad = True
                end = n
            body = s[i + 2 : end]
            subs.append(body)
            buf.append("$(" + body + ")")
            return end + 1
        if nxt == "{":
            end = _match_brace(s, i + 2)
            if end < 0:
                self.bad = True
                end = n
            inner = s[i + 2 : end]
            if "$(" in inner or "`" in inner:
                subs.append(inner)
            buf.append("${" + inner + "}")
            return end + 1
        buf.append("$")
        return i + 1


_QUOTED_MARK = "\x00quoted\x00"  # sentinel appended by _dollar; identity-compared, never joined


_QUOTE_CHARS = re.compile(r"[\"'`]")


class _Simple:
    __slots__ = ("heredocs", "redirs", "words")

    def __init__(self) -> None:
        self.words: list[_Word] = []
        self.redirs: list[tuple[str, _Word | None]] = []
        self.heredocs: list[_Heredoc] = []


_REDIR_OPS = frozenset({"<", ">", ">>", "<>", ">|", "&>", "&>>", "<&", ">&", "<<<", "<<", "<<-"})


def _simple_commands(toks: list[object]) -> list[_Simple]:
    current = _Simple()
    out = [current]
    i = 0
    count = len(toks)
    while i < count:
        tok = toks[i]
        if type(tok) is _Word:
            current.words.append(tok)
        elif type(tok) is _Heredoc:
            current.heredocs.append(tok)
        elif tok in _REDIR_OPS:
            if tok not in ("<<", "<<-"):
                nxt = toks[i + 1] if i + 1 < count else None
                if type(nxt) is _Word:
                    current.redirs.append((tok, nxt))  # type: ignore[arg-type]
                    i += 1
                else:
                    current.redirs.append((tok, None))  # type: ignore[arg-type]
        else:
            current = _Simple()
            out.append(current)
        i += 1
    return [sc for sc in out if sc.words or sc.redirs or sc.heredocs]


_BRACE_RE = re.compile(r"\{([^{}]*)\}")
_SEQ_RE = re.compile(r"(-?\d+|[A-Za-z])\.\.(-?\d+|[A-Za-z])(?:\.\.(-?\d+))?\Z")


def _brace_expand(word: str) -> list[str]:
    """bash brace expansion (`a{b,c}d`, `{1..3}`, nested). Comma alternatives are expanded in
    full and refused past MAX_BRACE_WORDS (fail closed: truncating could drop the one word that
    names a secret); sequences longer than 256 stay literal (they cannot spell letters)."""
    if "{" not in word or "}" not in word:
        return [word]
    results = [word]
    done: list[str] = []
    rounds = 0
    while results:
        rounds += 1
        if rounds > 64:
            raise ExtractionError("brace expansion too deep")
        nxt: list[str] = []
        for item in results:
            expanded = _brace_once(item)
            if expanded is None:
                done.append(item)
            else:
                nxt.extend(expanded)
            if len(nxt) + len(done) > MAX_BRACE_WORDS:
                raise ExtractionError(f"brace expansion yields more than {MAX_BRACE_WORDS} words")
        results = nxt
    return done


def _brace_once(word: str) -> list[str] | None:
    """Expand the first innermost expandable brace group, or None when there is none."""
    for match in _BRACE_RE.finditer(word):
        inner = match.group(1)
        if "," in inner:
            parts = _split_top_commas(inner)
            if len(parts) > 1:
                return [word[: match.start()] + part + word[match.end() :] for part in parts]
        seq = _SEQ_RE.match(inner)
        if seq:
            values = _sequence(seq.group(1), seq.group(2), seq.group(3))
            if values is not None:
                return [word[: match.start()] + v + word[match.end() :] for v in values]
    return None


def _split_top_commas(inner: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    for index, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:index])
            start = index + 1
    parts.append(inner[start:])
    return parts


def _sequence(a: str, b: str, step_text: str | None) -> list[str] | None:
    step = abs(int(step_text)) if step_text else 1
    step = step or 1
    if a.lstrip("-").isdigit() and b.lstrip("-").isdigit():
        x, y = int(a), int(b)
        if abs(y - x) // step > 256:
            return None
        rng = range(x, y + (1 if y >= x else -1), step if y >= x else -step)
        return [str(v) for v in rng]
    if len(a) == 1 and len(b) == 1 and a.isalpha() and b.isalpha():
        x, y = ord(a), ord(b)
        rng = range(x, y + (1 if y >= x else -1), step if y >= x else -step)
        return [chr(v) for v in rng]
    return None


_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?\+?=(.*)\Z", re.S)
_RESERVED = frozenset(
    {
        "!",
        "{",
        "}",
        "if",
        "then",
        "else",
        "elif",
        "fi",
        "do",
        "done",
        "while",
        "until",
        "time",
        "coproc",
        "function",
        "[[",
        "]]",
        "in",
        "esac",
    }
)
_DATA_KEYWORDS = frozenset({"for", "select", "case"})
_NULL_TARGETS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty", "-"})
_WRITE_REDIRS = frozenset({">", ">>", "&>", "&>>", ">|", "<>", ">&"})
_WHICH_RE = re.compile(
    r"(?:\$\(|`)\s*(?:which|command\s+-[vV]|type\s+-[pP]|whence\s+-p)\s+([^\s)`]+)\s*[)`]\Z"
)
_SHELLS = frozenset(
    {
        "sh",
        "bash",
        "zsh",
        "dash",
        "ksh",
        "mksh",
        "ash",
        "fish",
        "csh",
        "tcsh",
        "rbash",
        "yash",
        "posh",
        "busybox",
        "elvish",
        "nu",
        "xonsh",
        "pwsh",
        "powershell",
        "cmd",
        "oksh",
        "loksh",
    }
)
_SHELL_ARG_OPTS = frozenset({"-o", "-O", "+o", "+O", "--rcfile", "--init-file"})
_INTERP_RE = re.compile(
    r"(?:(?P<python>python|pypy|ipython|jython)[0-9.]*(?:-dbg)?|(?P<node>node|nodejs|bun|deno|tsx|ts-node|qjs)"
    r"|(?P<perl>perl)[0-9.]*|(?P<ruby>ruby|jruby|irb)[0-9.]*|(?P<php>php)[0-9.]*"
    r"|(?P<lua>lua|luajit)[0-9.]*|(?P<osa>osascript)|(?P<r>rscript)|(?P<julia>julia)"
    r"|(?P<awk>awk|gawk|mawk|nawk)|(?P<tcl>tclsh|wish|expect)[0-9.]*)\Z"
)
# Short flags after which the next word (or the rest of the cluster) is program text.
_CODE_LETTERS = {
    "python": "c",
    "node": "ep",
    "perl": "eE",
    "ruby": "e",
    "php": "rR",
    "lua": "e",
    "osa": "e",
    "r": "e",
    "julia": "e",
    "tcl": "c",
}
_CODE_LONG = frozenset({"--eval", "--print", "--command", "--exec", "--expression"})

_READ_PROGS = frozenset(
    "cat tac nl head tail less more most bat batcat view vi vim nvim nano emacs ed ex pico micro "
    "od xxd hexdump hd strings base64 base32 basenc uuencode grep egrep fgrep zgrep rg ag ack "
    "awk gawk mawk nawk sed sort uniq wc cut paste join diff diff3 sdiff cmp comm file stat "
    "md5sum sha1sum sha224sum sha256sum sha384sum sha512sum b2sum cksum sum md5 shasum source . "
    "jq yq column fold fmt pr iconv gpg zcat zless zmore bzcat bzless xzcat lzcat zstdcat tar "
    "unzip zip 7z cp mv rsync scp ls find tree du locate look split csplit readlink realpath dd "
    "openssl sqlite3 install tee xargs lsattr getfacl exiftool pdftotext identify ffprobe "
    "hexyl glow mdcat csvlook xmllint tidy".split()
)
_WRITE_PROGS = frozenset(
    "tee cp mv rm rmdir mkdir touch ln chmod chown chgrp truncate shred install unlink mkfifo "
    "mknod patch rsync scp sftp wget wget2 split csplit mktemp chattr setfacl zip unzip gzip "
    "gunzip bzip2 bunzip2 xz unxz zstd unzstd 7z cpio ar ed ex vi vim nvim nano emacs pico micro "
    "srm wipe sponge rename mmv dos2unix unix2dos crontab visudo aria2c axel yt-dlp youtube-dl "
    "lftp ftp tftp git-lfs".split()
)
_NET_PROGS = frozenset(
    "curl wget wget2 aria2c axel lynx w3m links elinks http https xh xhs httpie curlie nc ncat "
    "netcat socat telnet ssh scp sftp mosh ftp tftp lftp ping ping6 traceroute traceroute6 "
    "tracepath mtr dig nslookup host whois nmap masscan arping fping hping3 drill kdig yt-dlp "
    "youtube-dl gh aws gcloud gsutil az kubectl helm doctl flyctl heroku vercel netlify npx bunx "
    "twine ngrok cloudflared tailscale ssh-keyscan ssh-copy-id smbclient redis-cli psql mysql "
    "mongosh mongo sqlcmd ldapsearch websocat wscat grpcurl rclone s3cmd gsutil".split()
)
_NET_SUBCOMMANDS: dict[str, frozenset[str]] = {
    "git": frozenset(
        {
            "clone",
            "fetch",
            "pull",
            "push",
            "ls-remote",
            "submodule",
            "remote",
            "archive",
            "send-email",
            "request-pull",
            "svn",
        }
    ),
    "npm": frozenset(
        {
            "install",
            "i",
            "ci",
            "add",
            "update",
            "upgrade",
            "publish",
            "exec",
            "x",
            "create",
            "init",
            "view",
            "info",
            "audit",
            "login",
            "dlx",
        }
    ),
    "pnpm": frozenset(
        {"install", "i", "add", "update", "up", "publish", "dlx", "exec", "create", "fetch"}
    ),
    "yarn": frozenset({"install", "add", "upgrade", "up", "publish", "dlx", "create", "npm"}),
    "bun": frozenset({"install", "i", "add", "update", "publish", "x", "create"}),
    "pip": frozenset({"install", "download", "search", "index", "wheel"}),
    "pip3": frozenset({"install", "download", "search", "index", "wheel"}),
    "uv": frozenset({"pip", "add", "sync", "lock", "run", "tool", "publish", "venv", "python"}),
    "uvx": frozenset(),
    "pipx": frozenset({"install", "run", "inject", "upgrade"}),
    "poetry": frozenset({"install", "add", "update", "lock", "publish"}),
    "pdm": frozenset({"install", "add", "update", "lock", "publish", "sync"}),
    "pipenv": frozenset({"install", "update", "lock", "sync"}),
    "conda": frozenset({"install", "create", "update", "search"}),
    "mamba": frozenset({"install", "create", "update", "search"}),
    "cargo": frozenset({"install", "fetch", "publish", "update", "add", "search", "login"}),
    "go": frozenset({"get", "install", "mod"}),
    "gem": frozenset({"install", "push", "update", "fetch", "search"}),
    "bundle": frozenset({"install", "update"}),
    "composer": frozenset({"install", "require", "update", "create-project"}),
    "apt": frozenset({"install", "update", "upgrade", "download", "full-upgrade"}),
    "apt-get": frozenset({"install", "update", "upgrade", "download", "dist-upgrade", "source"}),
    "yum": frozenset({"install", "update", "upgrade", "download"}),
    "dnf": frozenset({"install", "update", "upgrade", "download"}),
    "apk": frozenset({"add", "update", "upgrade", "fetch"}),
    "brew": frozenset({"install", "update", "upgrade", "fetch", "tap"}),
    "docker": frozenset({"pull", "push", "login", "run", "build", "search", "buildx", "compose"}),
    "podman": frozenset({"pull", "push", "login", "run", "build", "search"}),
    "dotnet": frozenset({"add", "restore", "tool", "nuget", "new"}),
    "terraform": frozenset({"init", "apply", "plan", "destroy", "import", "refresh"}),
}
_WRITE_SUBCOMMANDS: dict[str, frozenset[str]] = {
    "git": frozenset(
        {
            "clone",
            "checkout",
            "reset",
            "clean",
            "apply",
            "am",
            "commit",
            "merge",
            "pull",
            "rebase",
            "stash",
            "init",
            "mv",
            "rm",
            "restore",
            "switch",
            "add",
            "cherry-pick",
            "revert",
            "worktree",
            "config",
            "tag",
            "branch",
            "fetch",
            "submodule",
            "gc",
        }
    ),
    "npm": frozenset({"install", "i", "ci", "add", "update", "uninstall", "rm", "init", "link"}),
    "pip": frozenset({"install", "uninstall", "download", "wheel"}),
    "pip3": frozenset({"install", "uninstall", "download", "wheel"}),
    "cargo": frozenset({"install", "build", "new", "init", "add", "update"}),
    "go": frozenset({"get", "install", "build", "mod"}),
}
_CONDITIONAL_EFFECTS = frozenset(
    {
        *_NET_SUBCOMMANDS,
        *_WRITE_SUBCOMMANDS,
        "sed",
        "gsed",
        "perl",
        "ruby",
        "dd",
        "tar",
        "bsdtar",
        "gtar",
        "curl",
        "sort",
        "find",
        "ssh",
        "scp",
        "sftp",
        "rsync",
    }
)
_HOST_PROGS = frozenset(
    {
        "ping",
        "ping6",
        "traceroute",
        "traceroute6",
        "tracepath",
        "mtr",
        "whois",
        "arping",
        "hping3",
        "mosh",
        "ssh-keyscan",
        "ssh-copy-id",
        "nslookup",
        "host",
        "drill",
        "kdig",
        "dig",
        "nmap",
        "fping",
        "masscan",
    }
)
_HOST_PORT_PROGS = {"telnet": 23, "ftp": 21, "tftp": 69, "lftp": 21}
_URL_PROGS = {
    "curl": "http",
    "wget": "http",
    "wget2": "http",
    "aria2c": "http",
    "axel": "http",
    "lynx": "http",
    "w3m": "http",
    "links": "http",
    "elinks": "http",
    "http": "http",
    "https": "https",
    "xh": "http",
    "xhs": "https",
    "curlie": "http",
    "yt-dlp": "https",
    "youtube-dl": "https",
    "websocat": "ws",
    "wscat": "ws",
    "httpie": "http",
}
_DNS_TYPES = frozenset(
    "a aaaa mx txt ns cname soa ptr srv any caa ds dnskey naptr spf https svcb axfr ixfr in ch hs".split()
)
_DB_HOST_OPTS = {
    "psql": (("-h", "--host"), ("-p", "--port"), 5432),
    "pg_dump": (("-h", "--host"), ("-p", "--port"), 5432),
    "mysql": (("-h", "--host"), ("-P", "--port"), 3306),
    "mysqldump": (("-h", "--host"), ("-P", "--port"), 3306),
    "redis-cli": (("-h",), ("-p",), 6379),
    "mongosh": (("--host",), ("--port",), 27017),
    "mongo": (("--host",), ("--port",), 27017),
    "ldapsearch": (("-h",), ("-p",), 389),
    "smbclient": (("-I",), ("-p",), 445),
}
# Option letters that take a value, per program (so that value is not read as a host/URL).
_CURL_SHORT_ARG = frozenset("AbcCdDeEFHKmoPQrtTuUwxXyYz")
_CURL_LONG_ARG = frozenset(
    "url data data-ascii data-binary data-raw data-urlencode json form form-string header "
    "output upload-file proxy preproxy resolve connect-to cookie cookie-jar config cacert capath "
    "cert key user user-agent referer request max-time connect-timeout retry retry-delay "
    "retry-max-time write-out dump-header trace trace-ascii stderr unix-socket "
    "abstract-unix-socket interface dns-servers doh-url output-dir netrc-file proto "
    "proto-default proto-redir limit-rate range oauth2-bearer variable url-query hsts alt-svc "
    "etag-save etag-compare local-port mail-from mail-rcpt mail-auth proxy-user proxy-header "
    "proxy-cacert proxy-cert proxy-key socks4 socks4a socks5 socks5-hostname "
    "socks5-gssapi-service cert-type key-type pass ciphers expect100-timeout "
    "happy-eyeballs-timeout-ms keepalive-time max-filesize max-redirs speed-limit speed-time "
    "time-cond tls-max tlsuser tlspassword login-options sasl-authzid service-name "
    "telnet-option ftp-port quote krb delegation engine egd-file random-file create-file-mode "
    "aws-sigv4 ssl-sessions".split()
)
_WGET_SHORT_ARG = frozenset("OoaPieTtwQlARDXIUB")
_WGET_LONG_ARG = frozenset(
    "output-document output-file append-output directory-prefix input-file execute tries "
    "timeout wait quota level accept reject domains exclude-directories include-directories "
    "user-agent base post-data post-file body-data body-file header user password http-user "
    "http-password proxy-user proxy-password load-cookies save-cookies ca-certificate "
    "certificate private-key method referer config bind-address limit-rate".split()
)
_SSH_SHORT_ARG = frozenset("bcDEeFIiJLlmOopQRSWwB")
_SCP_SHORT_ARG = frozenset("cFiJloPSDX")
_NC_SHORT_ARG = frozenset("pswxXeciqWIOTVMmPbg")
_GENERIC_OPT_ARG: dict[str, frozenset[str]] = {
    "ping": frozenset("cisItWwlpQSMOLmT"),
    "ping6": frozenset("cisItWwlpQSMOLmT"),
    "traceroute": frozenset("fgimpqsztwN"),
    "mtr": frozenset("cipsBfmQaTu"),
    "dig": frozenset("bcfkpqtxy"),
    "nmap": frozenset("opeDSiM"),
}


def _basename(program: str) -> str:
    return program.rstrip("/").rsplit("/", 1)[-1]


def _short_value(word: str, letters: frozenset[str]) -> tuple[str, str | None, bool]:
    """For a short-option cluster like `-sSLo` / `-ofile`: (letter, attached value, takes next
    word). The first letter that takes a value ends the cluster, as getopt does."""
    body = word[1:]
    for index, letter in enumerate(body):
        if letter in letters:
            rest = body[index + 1 :]
            return (letter, rest, False) if rest else (letter, None, True)
    return "", None, False


def _shell_vars(ctx: _Ctx) -> dict[str, str | None]:
    variables = dict(ctx.vars)
    variables["IFS"] = " "
    return variables


_B64_WORD = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{12,}={0,2}(?![A-Za-z0-9+/=_-])")


def _b64_text(word: str) -> str | None:
    """Printable text a base64 word decodes to, or None (most words are not base64)."""
    if len(word) % 4 == 1 or len(word) > 65536:
        return None
    try:
        raw = base64.b64decode(word + "=" * (-len(word) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if (
        not text
        or "\x00" in text
        or sum(ch.isprintable() or ch in "\n\t" for ch in text) < len(text)
    ):
        return None
    return text


class _ShellState:
    """Directories and variables one command string runs with. `pvars` is None while no
    assignment changed the variables, so path resolution can use the per-environment memo."""

    __slots__ = ("cwd_changed", "cwds", "pvars", "vars")

    def __init__(
        self, cwds: list[str], variables: dict[str, str | None], pristine: bool = True
    ) -> None:
        self.cwds = cwds
        self.vars = variables
        self.pvars: dict[str, str | None] | None = None if pristine else variables
        self.cwd_changed = False


# ---------------------------------------------------------------------------------------------
# Code (python -c, node -e, `code` role): string literals and their joins
# ---------------------------------------------------------------------------------------------

_HOME_MARKER = re.compile(
    r"Path\.home\(\)|os\.path\.expanduser\(\s*(['\"])~\1\s*\)|os\.homedir\(\)"
    r"|process\.env\.HOME\b|process\.env\[\s*(['\"])HOME\2\s*\]"
    r"|os\.environ\[\s*(['\"])HOME\3\s*\]|os\.environ\.get\(\s*(['\"])HOME\4\s*\)"
    r"|os\.getenv\(\s*(['\"])HOME\5\s*\)|ENV\[\s*(['\"])HOME\6\s*\]|\$ENV\{\s*HOME\s*\}"
    r"|Dir\.home\b|Deno\.env\.get\(\s*(['\"])HOME\7\s*\)|getenv\(\s*(['\"])HOME\8\s*\)"
    r"|expanduser\(\s*(['\"])~\9\s*\)|homedir\(\)"
)
_CHR_CALL = re.compile(
    r"\b(?:chr|String\.fromCharCode|String\.fromCodePoint)\(\s*((?:(?:0x[0-9A-Fa-f]+|\d+)\s*,?\s*)+)\)"
)
_LIT_START = re.compile(r"(?<![A-Za-z0-9_])([rRbBuUfF]{0,2})('''|\"\"\"|'|\"|`)")
_LIT_END = {
    "'": re.compile(r"(?:[^'\\\n]|\\.)*", re.S),
    '"': re.compile(r'(?:[^"\\\n]|\\.)*', re.S),
    "`": re.compile(r"(?:[^`\\]|\\.)*", re.S),
}
_CODE_ESC = re.compile(
    r"\\(x[0-9A-Fa-f]{2}|u\{[0-9A-Fa-f]{1,6}\}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[0-7]{1,3}|N\{[^}]{1,80}\}|.)",
    re.S,
)
_JOIN_GAP = re.compile(r"\s*(?:\+|,|/|\.|\.\.|<<|\|\|)?\s*\Z")
_COMMENT_START = re.compile(r"#|//")
_SHELL_HINT = re.compile(
    r"system|popen|subprocess|exec|spawn|shell|`|%x|run\(|Popen|check_output|call\("
)
_HOST_PORT_TUPLE = re.compile(r"""(['"])(\[?[A-Za-z0-9.\-:%]+\]?)\1\s*,\s*(\d{1,5})\b""")


def _code_unescape(body: str) -> str:
    def repl(match: re.Match[str]) -> str:
        esc = match.group(1)
        head = esc[0]
        try:
            if head == "x":
                return chr(int(esc[1:], 16))
            if head == "u":
                return _safe_chr(int(esc[2:-1] if esc[1] == "{" else esc[1:], 16))
            if head == "U":
                return _safe_chr(int(esc[1:], 16))
            if head in "01234567":
                return chr(int(esc, 8))
            if head == "N":
                return unicodedata.lookup(esc[2:-1])
        except (ValueError, KeyError):
            return esc
        return _ANSI_SIMPLE.get(head, esc)

    return _CODE_ESC.sub(repl, body) if "\\" in body else body


def _code_literals(code: str, skip_comments: bool) -> list[tuple[int, int, str]]:
    atoms: list[tuple[int, int, str]] = []
    n = len(code)
    i = 0
    while i < n:
        match = _LIT_START.search(code, i)
        if match is None:
            break
        if skip_comments:
            comment = _COMMENT_START.search(code, i, match.start())
            if comment is not None:
                j = code.find("\n", comment.start())
                i = n if j < 0 else j + 1
                continue
        prefix, quote = match.group(1), match.group(2)
        start = match.end()
        raw = "r" in prefix.lower()
        if len(quote) == 3:
            end = code.find(quote, start)
            if end < 0:
                end = n
            body = code[start:end]
            stop = end + 3
        else:
            m = _LIT_END[quote].match(code, start)
            end = m.end() if m else start
            body = code[start:end]
            stop = end + 1
        atoms.append((match.start(), min(stop, n), body if raw else _code_unescape(body)))
        i = stop
    return atoms


# ---------------------------------------------------------------------------------------------
# The walker
# ---------------------------------------------------------------------------------------------

_LATIN1_HEADER = sys.getsizeof("\u00e9") - 2  # object header of a compact non-ASCII str
_FLOAT = float
_STR = str
_DICT = dict
_LIST = list
_INT = int
_BOOL = bool


class _Acc:
    """Accumulates the facts of one call. Ordered sets are dicts (insertion order)."""

    __slots__ = (
        "anchors",
        "cls",
        "cmd_strings",
        "commands",
        "ctx",
        "endpoints",
        "flags",
        "hosts",
        "items",
        "overflow",
        "paths",
        "phys",
        "programs",
        "relatives",
        "tokens",
        "url_words",
        "urls",
    )

    def __init__(self, ctx: _Ctx, cls: Classifier) -> None:
        self.ctx = ctx
        self.cls = cls
        self.paths: dict[str, None] = {}
        self.phys: list[str] = []
        self.urls: dict[str, None] = {}
        self.hosts: dict[str, None] = {}
        self.endpoints: dict[str, None] = {}
        self.commands: list[str] = []
        self.programs: dict[str, None] = {}
        self.flags = 0
        self.items = 0
        self.tokens = 0
        self.anchors: list[str] = []
        self.relatives: list[str] = []
        self.overflow = False
        self.url_words = 0
        self.cmd_strings: list[str] = []

    # -- facts --------------------------------------------------------------------------------

    def add_path(self, path: str) -> None:
        if path in self.paths:
            return
        self.paths[path] = None
        if path.startswith("/dev/"):
            self._dev_net(path)

    def _dev_net(self, path: str) -> None:
        """bash turns `/dev/tcp/host/port` redirections into connections."""
        parts = path.split("/")
        if len(parts) >= 5 and parts[2] in ("tcp", "udp") and parts[3]:
            for host in _clean_hosts(parts[3]):
                self.add_host(host)
                if parts[4].isdigit() and int(parts[4]) <= 65535:
                    self.endpoints.setdefault(f"{_host_text(host)}:{int(parts[4])}", None)
            self.flags |= _N

    def add_host(self, host: str) -> None:
        self.hosts.setdefault(host, None)
        if ":" in host:
            inner = embedded_ipv4(host)
            if inner:
                self.hosts.setdefault(inner, None)

    def add_endpoint(self, host: str, port: int | None) -> None:
        if port is not None:
            self.endpoints.setdefault(f"{_host_text(host)}:{port}", None)

    def merge_path_out(self, out: _PathOut, record_relative: bool) -> None:
        for path in out.paths:
            if path not in self.paths:
                self.add_path(path)
        if out.phys:
            self.phys.extend(out.phys)
        if record_relative and out.relative:
            if len(self.relatives) < MAX_RELATIVES:
                self.relatives.extend(out.relative)
            else:
                self.overflow = True

    def path_value(
        self,
        raw: str,
        mode: int,
        bases: Sequence[str] | None = None,
        variables: Mapping[str, str | None] | None = None,
    ) -> None:
        """Add every canonical reading of a raw path value (relative → each base)."""
        if bases is None:
            self.merge_path_out(_resolve_path(raw, mode, self.ctx.workspace, self.ctx), True)
            return
        if variables is self.ctx.vars:
            variables = None
        for base in bases:
            self.merge_path_out(_resolve_path(raw, mode, base, self.ctx, variables), True)

    def url_value(self, text: str, default_scheme: str | None, memo: bool = True) -> bool:
        """Add one URL (or `file:` path). True when it named a host."""
        out = _url_facts(text, default_scheme, self.ctx, memo)
        if out.file is not None:
            self.path_value(out.file, _M_SOFT)
            return False
        for url in out.urls:
            self.urls.setdefault(url, None)
        for host in out.hosts:
            self.hosts.setdefault(host, None)
        for endpoint in out.endpoints:
            self.endpoints.setdefault(endpoint, None)
        return bool(out.hosts)

    def scan_urls(self, text: str) -> bool:
        found = False
        if ":" not in text:
            return False
        if len(text) > _BIG_TEXT and (occurrences := text.count("://")) > _MANY_URLS:
            if occurrences > 10 * MAX_URLS:
                raise ExtractionError(f"more than {10 * MAX_URLS} URLs in one value")
            words = _embedded_urls_big(text)
        else:
            words = _embedded_urls(text)
        if len(words) > 64:
            words = list(dict.fromkeys(words))
            self.url_words += len(words)
            if self.url_words > MAX_URLS:
                # Reporting them all would make the decision (and every rule over call.urls)
                # arbitrarily slow; no legitimate call names this many destinations.
                raise ExtractionError(f"more than {MAX_URLS} distinct URLs in one call")
        if len(words) <= 64:
            for word in words:
                found = self.url_value(word, None) or found
            return found
        return self.url_words_bulk(words)

    def url_words_bulk(self, words: list[str]) -> bool:
        """Many URLs (a big document): the common `scheme://authority/path` shape is split with
        one regex and its authority parsed once per distinct (scheme, authority); anything
        unusual goes through the full parser. Same facts, a fraction of the per-URL cost."""
        urls = self.urls
        hosts = self.hosts
        endpoints = self.endpoints
        seen: dict[tuple[str, str], str | None] = {}
        match = _SIMPLE_URL.match
        for word in words:
            m = match(word)
            if m is None:
                self.url_value(word, None, False)
                continue
            scheme = m.group(1).lower()
            if scheme == "file" or scheme not in _SIMPLE_SCHEMES:
                self.url_value(word, None, False)
                continue
            authority = m.group(2)
            key = (scheme, authority)
            host_port = seen.get(key, "")
            if host_port == "":
                host_port, new_hosts, new_endpoints = _authority_facts(scheme, authority, authority)
                seen[key] = host_port
                for host in new_hosts:
                    hosts.setdefault(host, None)
                for endpoint in new_endpoints:
                    endpoints.setdefault(endpoint, None)
            if host_port is not None:
                path = m.group(3) or "/"
                hash_at = path.find("#")
                if hash_at >= 0:
                    path = path[:hash_at] or "/"
                if path[0] != "/":
                    path = "/" + path
                urls.setdefault(f"{scheme}://{host_port}{path}", None)
        return bool(seen)

    # -- values -------------------------------------------------------------------------------

    def scan_generic(
        self,
        s: str,
        depth: int,
        bases: Sequence[str] | None = None,
        variables: Mapping[str, str | None] | None = None,
    ) -> None:
        """Unknown-role string: JSON inside, URLs anywhere, path-looking words anywhere."""
        if not s:
            return
        first = s[0]
        if first in '{["' or (first in " \t\r\n" and s.lstrip()[:1] in ("{", "[")):
            if self._json_in_string(s, depth):
                return
        if ":" in s:
            self.scan_urls(s)
            if _SPECIAL_NOSLASH.match(s):
                self.url_value(s.strip(), None)
        if s.startswith(_STRONG_PREFIXES) and not _too_long(s):
            self.path_value(s, _M_GENERIC, bases, variables)
        elif first == "$" and _VAR_START.match(s):
            self.path_value(s, _M_GENERIC, bases, variables)
        if first.isdigit() or first == "[" or first == ":":
            if _BARE_IPV4.match(s) or _BARE_IPV6.match(s):
                self.url_value(s, "tcp")
        elif ":" in s and first.isalpha() and len(s) < 300:
            hp = _BARE_HOSTPORT.match(s)
            if hp:
                self.url_value(s, "tcp")
        if _TOKEN_HINT.search(s) is not None:
            self._scan_tokens(s, bases, variables)

    def _scan_tokens(
        self, s: str, bases: Sequence[str] | None, variables: Mapping[str, str | None] | None
    ) -> None:
        """Each separator-delimited word that contains a (possibly encoded) slash is a path."""
        if not any(ch in s for ch in _TOKEN_SEPS):
            tokens: Iterable[str] = (s,)
        else:
            tokens = self._tokens(s)
        for token in tokens:
            if "://" in token and token[:5].lower() != "file:":
                continue  # URLs were taken by scan_urls
            if token.startswith("-") and "=" not in token:
                # An option with an attached value (`-i/home/a/.ssh/id_rsa`, `-Iinclude/x`).
                for value in dict.fromkeys((token[2:], _OPTION_NAME.sub("", token, count=1))):
                    if value and _TOKEN_HINT.search(value):
                        self._token_path(value, bases, variables)
                continue
            self._token_path(token, bases, variables)
            if len(token) < 4096 and _PIECE_SPLIT.search(token) and "://" not in token:
                for piece in _PIECE_SPLIT.split(token):
                    if piece and piece != token and _TOKEN_HINT.search(piece):
                        self._token_path(piece, bases, variables)

    def _token_path(
        self, token: str, bases: Sequence[str] | None, variables: Mapping[str, str | None] | None
    ) -> None:
        if _too_long(token):
            # A path the kernel would refuse unless a consumer normalises it first: keep it only
            # if lexical normalisation shrinks it (e.g. "/home/a/.ssh/id_rsa" + "/." * 3000).
            if "/." not in token and "//" not in token and "%" not in token:
                return
        self.path_value(token, _M_GENERIC, bases, variables)

    def _tokens(self, s: str) -> Iterable[str]:
        pos = 0
        search = _TOKEN_HINT.search
        stop = _TOKEN_STOP.search
        while True:
            hint = search(s, pos)
            if hint is None:
                return
            k = hint.start()
            low = max(pos, k - 1024)
            window = s[low:k][::-1]
            start = k - _TOKEN_BODY_REV.match(window).end()  # type: ignore[union-attr]
            if start > 0 and s[start - 1] == "}":
                # `${HOME}/.ssh`: the braces of a parameter expansion are not a word boundary.
                braced = _BRACED_VAR_TAIL.search(s, max(0, start - 128), start)
                if braced is not None:
                    start = braced.start()
            end_match = stop(s, k)
            end = len(s) if end_match is None else end_match.start()
            if end > start:
                yield s[start:end]
            pos = max(end, k + 1)

    def _json_in_string(self, s: str, depth: int) -> bool:
        try:
            value = json.loads(s, parse_constant=lambda _: None)
        except RecursionError:
            raise ExtractionError("JSON inside a string is nested too deeply") from None
        except ValueError:
            return False
        if isinstance(value, (dict, list)):
            self.walk(value, _GENERIC, depth + 1)
            return True
        if isinstance(value, str) and s.startswith('"'):
            self.check_str(value)
            self.scan_generic(value, depth + 1)
            return True
        return False

    def check_str(self, s: str) -> None:
        """NUL and lone surrogates are refused (C consumers truncate; encoders disagree)."""
        if "\x00" in s:
            raise ExtractionError("NUL byte in a string")
        if not s.isascii():
            # CPython compact strings: a 1-byte (Latin-1) string cannot hold surrogates, and its
            # size says so in O(1); only wider strings pay for the O(n) encode.
            if len(s) > 64 and sys.getsizeof(s) - _LATIN1_HEADER <= len(s) + 1:
                return
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                raise ExtractionError("lone surrogate (undecodable) in a string") from None

    def visit_str(self, s: str, role: int, depth: int) -> None:
        if role == _PATH or role == _SOFT_PATH:
            mode = _M_STRICT if role == _PATH else _M_SOFT
            if len(s) <= _CACHEABLE_LEN and "://" not in s:
                self.path_value(s, mode)
                if s[:1] in ("{", "["):
                    self._json_in_string(s, depth)
                elif _WS.search(s) is not None:
                    # Not a plain path after all (prose under a path-ish key): its words too.
                    self.scan_generic(s, depth)
                return
            if "://" in s and s[:5].lower() != "file:":
                self.scan_urls(s)
            self.path_value(s, mode)
            if s[:1] in ("{", "["):
                self._json_in_string(s, depth)
            elif _WS.search(s) is not None:
                self.scan_generic(s, depth)
        elif role == _GENERIC:
            self.scan_generic(s, depth)
        elif role == _TEXT:
            if ":" in s:
                self.scan_urls(s)
        elif role == _URL:
            self.visit_url(s, depth)
        elif role == _COMMAND:
            self.flags |= _S
            self.command(s)
        else:  # _CODE
            self.flags |= _S
            self.code(s, depth, [self.ctx.workspace], self.ctx.vars)

    def visit_url(self, s: str, depth: int) -> None:
        stripped = s.strip()
        if not stripped:
            return
        if "\t" in stripped or "\n" in stripped or "\r" in stripped:
            # URL parsers (WHATWG, urllib) delete tab/CR/LF anywhere in a URL.
            self.scan_generic(s, depth)
            stripped = stripped.replace("\t", "").replace("\n", "").replace("\r", "")
        if stripped[0] in "{[":
            if self._json_in_string(stripped, depth):
                return
        if stripped.startswith(("/", "~", "./", "../")) and not stripped.startswith("//"):
            self.path_value(stripped, _M_SOFT)
            return
        if _WS.search(stripped):
            self.scan_generic(s, depth)
            return
        if self.url_value(stripped, "https"):
            self.flags |= _N
        self.scan_urls(stripped)

    # -- shell --------------------------------------------------------------------------------

    def command(self, s: str, cwds: list[str] | None = None, paths_only: bool = False) -> None:
        if not paths_only:
            self.cmd_strings.append(s)
        state = _ShellState(list(cwds) if cwds else [self.ctx.workspace], _shell_vars(self.ctx))
        _Shell(self, state, paths_only).analyse(s, 0)
        # Belt and braces: every path-looking token of the raw text, whatever the lexer thought.
        raw = _IFS_RE.sub(" ", s) if "IFS" in s else s
        self.scan_generic_raw(raw, state.cwds)
        if not paths_only:
            self.decoded_payloads(s, state)

    def decoded_payloads(self, s: str, state: _ShellState) -> None:
        """`echo <base64> | base64 -d | sh`, `printf '\\x63\\x61\\x74 …' | sh`: decode the payload
        words and analyse them as commands too (cheap insurance for a common idiom)."""
        if "base64" in s or "b64" in s:
            for word in _B64_WORD.findall(s):
                decoded = _b64_text(word)
                if decoded:
                    self.scan_generic(decoded, 0, state.cwds)
                    _Shell(
                        self,
                        _ShellState(list(state.cwds), dict(state.vars), state.pvars is None),
                        False,
                    ).analyse(decoded, 1)
        if "\\x" in s or "\\0" in s or "\\u" in s:
            decoded = _ansi_c(s)
            if decoded != s:
                self.scan_generic_raw(decoded, state.cwds)
                _Shell(
                    self,
                    _ShellState(list(state.cwds), dict(state.vars), state.pvars is None),
                    False,
                ).analyse(decoded, 1)

    def scan_generic_raw(self, s: str, bases: Sequence[str]) -> None:
        if ":" in s:
            self.scan_urls(s)
        if _TOKEN_HINT.search(s) is not None:
            self._scan_tokens(s, bases, None)

    def code(
        self,
        code: str,
        depth: int,
        bases: list[str],
        variables: Mapping[str, str | None],
        shell_depth: int = 0,
    ) -> None:
        """Program text: literals (decoded), joins of adjacent literals, home markers."""
        text = code
        if _HOME_MARKER.search(text):
            text = _HOME_MARKER.sub("'~'", text)
        if "chr" in text or "fromC" in text:
            text = _CHR_CALL.sub(_chr_literal, text)
        values: dict[str, None] = {}
        atom_sets = [_code_literals(text, False), _code_literals(text, True)]
        for atoms in atom_sets:
            for _, _, value in atoms:
                values.setdefault(value, None)
            group: list[str] = []
            previous_end = -1
            for start, end, value in atoms:
                if (
                    group
                    and _JOIN_GAP.match(text, previous_end, start) is not None
                    and len(group) < 32
                ):
                    group.append(value)
                else:
                    if len(group) > 1:
                        values.setdefault("".join(group), None)
                        values.setdefault("/".join(group), None)
                    group = [value]
                previous_end = end
            if len(group) > 1:
                values.setdefault("".join(group), None)
                values.setdefault("/".join(group), None)
        # Paths built through variables (`h = "/home/alice"; open(h + "/.ssh/id_rsa")`): join every
        # directory-looking literal with every path-tail literal. Bounded: 32 × 32.
        heads = [v for v in values if v.startswith(("/", "~")) and not _WS.search(v)][:32]
        tails = [v for v in values if v and not _WS.search(v) and ("/" in v or v.startswith("."))][
            :32
        ]
        for head in heads:
            for tail in tails:
                if head != tail:
                    values.setdefault(head.rstrip("/") + "/" + tail.lstrip("/"), None)
        for value in list(values):
            if len(value) >= 12 and "=" not in value[:-2] and _B64_WORD.fullmatch(value):
                decoded = _b64_text(value)
                if decoded:
                    values.setdefault(decoded, None)
        shellish = _SHELL_HINT.search(code) is not None
        for value in values:
            if not value:
                continue
            if value == "~":
                self.path_value(value, _M_SOFT, bases, variables)
                continue
            self.scan_generic(value, depth + 1, bases, variables)
            if (value[0].isdigit() or value[0] in "[:") and (
                _BARE_IPV4.match(value) or _BARE_IPV6.match(value)
            ):
                self.url_value(value, "tcp")
            if shellish and (" " in value or "\t" in value) and shell_depth < MAX_SHELL_NESTING:
                state = _ShellState(
                    list(bases), {**variables, "IFS": " "}, variables is self.ctx.vars
                )
                _Shell(self, state, False).analyse(value, shell_depth + 1)
        for match in _HOST_PORT_TUPLE.finditer(text):
            for host in _clean_hosts(match.group(2)):
                self.add_host(host)
                port = int(match.group(3))
                if port <= 65535:
                    self.add_endpoint(host, port)
        self.scan_generic_raw(code, bases)

    # -- structure ----------------------------------------------------------------------------

    def walk(self, value: Any, role: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ExtractionError(f"arguments nested deeper than {MAX_DEPTH}")
        kind = type(value)
        if kind is _STR:
            self.items += 1
            if self.items > MAX_ITEMS:
                raise ExtractionError(f"more than {MAX_ITEMS} strings and keys in arguments")
            self.check_str(value)
            self.visit_str(value, role, depth)
        elif kind is _DICT:
            self.walk_dict(value, role, depth)
        elif kind is _LIST:
            self.walk_list(value, role, depth)
        elif value is None or kind is _BOOL or kind is _INT:
            return
        elif kind is _FLOAT:
            if not math.isfinite(value):
                raise ExtractionError("non-finite number (NaN/Infinity) in arguments")
        else:
            self.walk_other(value, role, depth)

    def walk_other(self, value: Any, role: int, depth: int) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, str):
            self.walk(str.__str__(value), role, depth)
        elif isinstance(value, Mapping) and not isinstance(value, type):
            self.walk_dict(dict(value), role, depth)
        elif isinstance(value, list):
            self.walk_list(list(value), role, depth)
        elif isinstance(value, int):
            return
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ExtractionError("non-finite number (NaN/Infinity) in arguments")
        else:
            raise ExtractionError(f"non-JSON value of type {type(value).__name__} in arguments")

    def walk_list(self, value: list[Any], role: int, depth: int) -> None:
        if role == _COMMAND and value and all(type(v) is _STR for v in value):
            for item in value:
                self.check_str(item)
            self.flags |= _S
            self.argv(value)
        for item in value:
            self.walk(item, role, depth + 1)

    def walk_dict(self, value: dict[Any, Any], role: int, depth: int) -> None:
        key_info = self.cls.key_info
        command_value: str | None = None
        argv_value: list[str] | None = None
        for key, item in value.items():
            if type(key) is not _STR:
                if isinstance(key, str):
                    key = str.__str__(key)
                else:
                    raise ExtractionError(f"non-string object key of type {type(key).__name__}")
            self.items += 1
            if self.items > MAX_ITEMS:
                raise ExtractionError(f"more than {MAX_ITEMS} strings and keys in arguments")
            self.check_str(key)
            key_role, bits, dirish = key_info(key)
            if key_role == _GENERIC:
                key_role = role
            if (
                bits
                and item is not None
                and item != ""
                and item != []
                and item != {}
                and item is not False
            ):
                self.flags |= bits
            if key and (key[0] in "/~.$\\" or "/" in key or ":" in key or "%" in key):
                self.scan_generic(key, depth + 1)
            self.walk(item, key_role, depth + 1)
            if type(item) is _STR:
                if dirish:
                    self.anchor(item, key_role == _PATH)
                if key_role == _COMMAND:
                    command_value = item
            elif type(item) is _LIST and _squash(key) in _ARGVISH_KEYS:
                argv_value = [v for v in item if type(v) is _STR]
        if command_value is not None and argv_value:
            # `{"command": "cat", "args": ["id_rsa"]}` is exec(argv) in most shell-ish servers.
            self.argv([command_value, *argv_value], record_from=1)

    def anchor(self, raw: str, strict: bool) -> None:
        out = _resolve_path(raw, _M_STRICT if strict else _M_SOFT, self.ctx.workspace, self.ctx)
        for path in out.paths[:1]:
            if path not in self.anchors:
                if len(self.anchors) >= MAX_ANCHORS:
                    raise ExtractionError(f"more than {MAX_ANCHORS} directory-like arguments")
                self.anchors.append(path)

    def argv(self, argv: list[str], record_from: int = 0) -> None:
        """An exec-style argv (no shell): each element is one literal word."""
        state = _ShellState([self.ctx.workspace], _shell_vars(self.ctx))
        words = [_Word(a, [], True) for a in argv]
        for word in words[record_from:]:
            self.commands.append(word.text)
        _Shell(self, state, False).run(words, 0)

    def join_anchors(self) -> None:
        """Relative values next to a directory argument (`cwd`, `dir`, …) are resolved against it
        as well: `{"cwd": "~/.ssh", "command": "cat id_rsa"}` reads `~/.ssh/id_rsa`."""
        anchors = [a for a in self.anchors if a != self.ctx.workspace]
        if not anchors:
            return
        if self.overflow:
            # Joining only some of them could miss the one that names a secret.
            raise ExtractionError(
                f"more than {MAX_RELATIVES} relative paths next to a directory argument"
            )
        relatives = list(dict.fromkeys(self.relatives))
        for anchor in anchors:
            for rel in relatives:
                self.merge_path_out(_resolve_path(rel, _M_SOFT, anchor, self.ctx), False)
        for command in self.cmd_strings:
            self.command(command, anchors, paths_only=True)


def _chr_literal(match: re.Match[str]) -> str:
    chars = []
    for number in re.split(r"[\s,]+", match.group(1).strip()):
        if not number:
            continue
        try:
            chars.append(
                _safe_chr(int(number, 0) if number.lower().startswith("0x") else int(number))
            )
        except ValueError:
            return match.group()
    text = "".join(chars)
    if "'" in text:
        return match.group()
    return "'" + text + "'"


class _Shell:
    """Analyses command strings: words, programs, paths, hosts and effects."""

    __slots__ = ("acc", "paths_only", "state")

    def __init__(self, acc: _Acc, state: _ShellState, paths_only: bool) -> None:
        self.acc = acc
        self.state = state
        self.paths_only = paths_only

    # -- entry points -------------------------------------------------------------------------

    def analyse(self, s: str, depth: int) -> None:
        if depth > MAX_SHELL_NESTING:
            raise ExtractionError(f"shell commands nested deeper than {MAX_SHELL_NESTING}")
        lexer = _Lexer(s)
        toks = lexer.tokens()
        acc = self.acc
        acc.tokens += len(toks)
        if acc.tokens > MAX_SHELL_TOKENS:
            raise ExtractionError(f"command longer than {MAX_SHELL_TOKENS} shell tokens")
        for simple in _simple_commands(toks):
            self.simple(simple, depth)
        if lexer.bad and _QUOTE_CHARS.search(s):
            # Unbalanced quoting: bash would refuse the line, but another consumer may split it
            # differently. Re-read it with every quote character as a blank so no word that a
            # lenient splitter would see is lost (best effort, never fewer facts).
            self.analyse(_QUOTE_CHARS.sub(" ", s), depth + 1)

    def simple(self, sc: _Simple, depth: int) -> None:
        acc = self.acc
        words = sc.words
        if any("IFS" in w.text and not w.quoted for w in words):
            words = self.split_ifs(words)
        if not self.paths_only:
            acc.commands.extend(w.text for w in words)
        for word in words:
            for body in word.subs:
                self.analyse(body, depth + 1)
        for _, target in sc.redirs:
            if target is not None:
                for body in target.subs:
                    self.analyse(body, depth + 1)
        i = 0
        n = len(words)
        while i < n and not words[i].quoted and words[i].text in _RESERVED:
            i += 1
        if i < n and not words[i].quoted and words[i].text in _DATA_KEYWORDS:
            for word in words[i + 1 :]:
                self.arg_word(word, False)
            self.redirections(sc, "", depth)
            return
        assigns: list[tuple[str, _Word]] = []
        while i < n:
            match = _ASSIGN_RE.match(words[i].text)
            if match is None:
                break
            assigns.append((match.group(1), words[i]))
            i += 1
        for name, word in assigns:
            self.assignment(name, word, depth)
        program = self.run(words[i:], depth) if i < n else ""
        self.redirections(sc, program, depth)

    # -- words --------------------------------------------------------------------------------

    def split_ifs(self, words: list[_Word]) -> list[_Word]:
        """`cat${IFS}/etc/passwd`: an unquoted `$IFS` expands to a blank and splits the word."""
        out: list[_Word] = []
        for word in words:
            if "IFS" in word.text and not word.quoted and _IFS_RE.search(word.text):
                parts = _IFS_RE.sub(" ", word.text).split()
                for index, part in enumerate(parts):
                    out.append(_Word(part, word.subs if index == 0 else [], False))
            else:
                out.append(word)
        return out

    def variants(self, word: _Word) -> list[str]:
        """Readings of a word: brace-expanded, and each with and without known-variable/tilde
        expansion (quoted `'$HOME'` stays literal in bash; both readings are kept)."""
        text = word.text
        if not text:
            return [text]
        items = _brace_expand(text) if ("{" in text and "}" in text) else [text]
        out: list[str] = []
        variables = self.state.vars
        ctx = self.acc.ctx
        for item in items:
            out.append(item)
            expanded = item
            if "$" in expanded:
                expanded = _drop_special_params(_sub_known_vars(expanded, variables))
            if expanded.startswith("~"):
                slash = expanded.find("/")
                name = expanded[1:] if slash < 0 else expanded[1:slash]
                home = ctx.user_home(name)
                if home is not None:
                    rest = "" if slash < 0 else expanded[slash:]
                    reassigned = variables.get("HOME") if name == "" else None
                    if reassigned and reassigned != home:
                        out.append(reassigned + rest)
                    expanded = home + rest
            if expanded != item:
                out.append(expanded)
        return out

    def expanded(self, word: _Word) -> str:
        text = word.text
        if "$" in text:
            text = _drop_special_params(_sub_known_vars(text, self.state.vars))
        if text.startswith("~"):
            slash = text.find("/")
            home = self.acc.ctx.user_home(text[1:] if slash < 0 else text[1:slash])
            if home is not None:
                text = home + ("" if slash < 0 else text[slash:])
        return text

    def path_candidate(self, value: str, file_arg: bool) -> None:
        if not value or value == "-":
            return
        acc = self.acc
        if "://" in value and value[:5].lower() != "file:":
            return
        if _WS.search(value) and not value.startswith(_STRONG_PREFIXES):
            return  # prose-like word (a `-c` script, a message): its tokens are scanned instead
        if _looks_pathy(value) or value.startswith("$"):
            acc.path_value(value, _M_SOFT, self.state.cwds, self.state.pvars)
        elif file_arg and not _WS.search(value) and not value.isdigit():
            acc.path_value(value, _M_SOFT, self.state.cwds, self.state.pvars)
        if (
            acc.ctx.resolve
            and any(ch in value for ch in "*?[")
            and (file_arg or _looks_pathy(value))
        ):
            self.glob(value)

    def glob(self, pattern: str) -> None:
        """bash would expand it against the filesystem; do the same (bounded) when allowed."""
        acc = self.acc
        for base in self.state.cwds:
            for raw in _forms(pattern, _M_SOFT, acc.ctx, self.state.vars):
                full = raw if raw.startswith("/") else base + "/" + raw
                try:
                    matches = list(islice(_glob.iglob(full), MAX_GLOB_MATCHES))
                except (OSError, ValueError, re.error):
                    continue
                for match in matches:
                    for path in _normalise(_lexical(match), acc.ctx):
                        acc.add_path(path)

    def arg_word(self, word: _Word, file_arg: bool) -> None:
        acc = self.acc
        for value in self.variants(word):
            if not value:
                continue
            if ":" in value:
                acc.scan_urls(value)
            first = value[0]
            if first == "-" and len(value) > 1:
                eq = value.find("=")
                if eq > 0:
                    self.path_candidate(value[eq + 1 :], False)
                elif value[1] != "-" and len(value) > 2 and value[2] in "/~.$":
                    self.path_candidate(value[2:], False)
                continue
            if first == "@" and len(value) > 1:
                self.path_candidate(value[1:], True)
            self.path_candidate(value, file_arg)
            eq = value.find("=")
            if eq > 0 and value[:eq].replace("_", "").replace("-", "").isalnum():
                self.path_candidate(value[eq + 1 :], file_arg)
            if _TOKEN_HINT.search(value) is not None and (
                _WS.search(value) or _PIECE_SPLIT.search(value)
            ):
                acc._scan_tokens(value, self.state.cwds, self.state.pvars)

    def assignment(self, name: str, word: _Word, depth: int) -> None:
        value = word.text.split("=", 1)[1] if "=" in word.text else ""
        if value:
            self.arg_word(_Word(value, [], word.quoted), False)
            if name.endswith("COMMAND") or name in (
                "PAGER",
                "EDITOR",
                "VISUAL",
                "GIT_SSH_COMMAND",
                "PROMPT_COMMAND",
                "GIT_EDITOR",
                "LESSOPEN",
                "GIT_PAGER",
                "MANPAGER",
                "SSH_ASKPASS",
            ):
                self.analyse(value, depth + 1)
            if name in ("BASH_ENV", "ENV", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONSTARTUP"):
                self.acc.flags |= _R
        # Prefix assignments (`X=1 cmd`) do not persist in bash, but recording them anyway only
        # adds readings; a value computed at run time is unknown (None → kept literal).
        if word.subs or "`" in value or "$(" in value:
            self.state.vars[name] = None
        else:
            self.state.vars[name] = self.expanded(_Word(value, [], word.quoted))
        self.state.pvars = self.state.vars

    def redirections(self, sc: _Simple, program: str, depth: int) -> None:
        acc = self.acc
        shell = program in _SHELLS
        interp = _INTERP_RE.match(program) if program else None
        for op, target in sc.redirs:
            if target is None:
                continue
            if op == "<<<":
                text = target.text
                acc.scan_generic(text, 0, self.state.cwds, self.state.pvars)
                if shell:
                    self.analyse(text, depth + 1)
                elif interp:
                    acc.code(text, 0, self.state.cwds, self.state.vars, depth + 1)
                continue
            text = self.expanded(target)
            if op in ("<&", ">&") and (text.isdigit() or text == "-"):
                continue
            for value in self.variants(target):
                if value and value not in _NULL_TARGETS:
                    acc.path_value(value, _M_SOFT, self.state.cwds, self.state.pvars)
            if text in _NULL_TARGETS or text.startswith(("/dev/fd/", "/dev/tcp/", "/dev/udp/")):
                continue
            if op in _WRITE_REDIRS:
                acc.flags |= _W
            if op in ("<", "<>"):
                acc.flags |= _R
        for doc in sc.heredocs:
            body = doc.body
            if not body:
                continue
            acc.scan_generic_raw(body, self.state.cwds)
            if ":" in body:
                acc.scan_urls(body)
            if shell:
                self.analyse(body, depth + 1)
            elif interp:
                acc.code(body, 0, self.state.cwds, self.state.vars, depth + 1)

    # -- programs -----------------------------------------------------------------------------

    def run(self, argv: list[_Word], depth: int) -> str:
        """Analyse one argv (after assignments). Returns the innermost program name."""
        acc = self.acc
        program = ""
        guard = 0
        while argv:
            guard += 1
            if guard > 32:
                raise ExtractionError("too many nested command wrappers")
            head = argv[0]
            head_text = self.expanded(head)
            which = _WHICH_RE.match(head.text)
            if which:
                head_text = which.group(1)
            if "/" in head_text or head_text.startswith(("~", ".")):
                self.path_candidate(head_text, True)
                acc.flags |= _R
            name = _basename(head_text)
            program = name.lower()
            if not self.paths_only and name:
                acc.programs.setdefault(name, None)
                if program != name:
                    acc.programs.setdefault(program, None)
            acc.flags |= _S
            rest = self.unwrap(program, argv[1:], depth)
            if rest is None:
                break
            argv = rest
        else:
            return program
        args = argv[1:]
        self.effects(program, args)
        handler = _HANDLERS.get(program)
        interp = _INTERP_RE.match(program)
        if handler is not None:
            handler(self, program, args, depth)
        elif interp is not None:
            self.interpreter(interp.lastgroup or "", args, depth)
        elif program in _SHELLS:
            self.shell(args, depth)
        elif program in _HOST_PROGS or program in _GENERIC_OPT_ARG:
            self.host_program(program, args)
        elif program in _HOST_PORT_PROGS:
            self.host_port_program(program, args)
        elif program in _URL_PROGS:
            self.url_program(program, args)
        elif program in _DB_HOST_OPTS:
            self.db_program(program, args)
        file_arg = (
            program in _READ_PROGS
            or program in _WRITE_PROGS
            or program in _SHELLS
            or interp is not None
            or self.state.cwd_changed
        )
        for word in args:
            self.arg_word(word, file_arg)
        return program

    def effects(self, program: str, args: list[_Word]) -> None:
        acc = self.acc
        if program in _READ_PROGS:
            acc.flags |= _R
        if program in _WRITE_PROGS:
            acc.flags |= _W
        if program in _NET_PROGS:
            acc.flags |= _N
        if program not in _CONDITIONAL_EFFECTS:
            return
        texts = [w.text for w in args]
        sub = next((t for t in texts[:8] if t and not t.startswith("-")), "")
        net_subs = _NET_SUBCOMMANDS.get(program)
        if net_subs is not None and (sub in net_subs or program == "uvx"):
            acc.flags |= _N
        write_subs = _WRITE_SUBCOMMANDS.get(program)
        if write_subs is not None and sub in write_subs:
            acc.flags |= _W
        if program in ("sed", "gsed", "perl", "ruby") and any(
            t == "--in-place"
            or t.startswith("--in-place=")
            or (t.startswith("-") and not t.startswith("--") and "i" in t[1:])
            for t in texts
        ):
            acc.flags |= _W
        elif program == "dd" and any(t.startswith("of=") for t in texts):
            acc.flags |= _W
        elif program in ("tar", "bsdtar", "gtar") and texts:
            first = texts[0].lstrip("-")
            if any(c in first for c in "cxurA") or any(
                t in ("--create", "--extract", "--get", "--append", "--update") for t in texts
            ):
                acc.flags |= _W
        elif program == "curl" and any(
            t in ("--remote-name", "--remote-name-all", "--output", "--output-dir")
            or (t.startswith("-") and not t.startswith("--") and ("O" in t or "o" in t))
            for t in texts
        ):
            acc.flags |= _W
        elif program == "sort" and any(t.startswith(("-o", "--output")) for t in texts):
            acc.flags |= _W
        elif program == "find" and any(
            t in ("-delete", "-fprint", "-fprint0", "-fprintf", "-fls") for t in texts
        ):
            acc.flags |= _W
        if program in ("git", "ssh", "scp", "sftp", "rsync") and any(":" in t for t in texts):
            if program != "git" or sub in _NET_SUBCOMMANDS["git"]:
                acc.flags |= _N

    def unwrap(self, program: str, args: list[_Word], depth: int) -> list[_Word] | None:
        """Strip a command wrapper (`sudo`, `env`, `timeout 5`, `xargs -I{}`, …); None if
        `program` is not a wrapper."""
        spec = _WRAPPERS.get(program)
        if spec is None:
            return None
        arg_opts, positional = spec
        i = 0
        n = len(args)
        while i < n:
            text = args[i].text
            if text == "--":
                i += 1
                break
            if program == "env":
                if text in ("-S", "--split-string") and i + 1 < n:
                    self.analyse(args[i + 1].text, depth + 1)
                    return []
                if text.startswith("-S") and len(text) > 2:
                    self.analyse(text[2:], depth + 1)
                    return []
                if text.startswith("--split-string="):
                    self.analyse(text.split("=", 1)[1], depth + 1)
                    return []
                if _ASSIGN_RE.match(text) and not text.startswith("-"):
                    match = _ASSIGN_RE.match(text)
                    assert match is not None
                    self.assignment(match.group(1), args[i], depth)
                    i += 1
                    continue
            if (
                program in ("su", "runuser", "script", "flock", "sg")
                and text in ("-c", "--command")
                and i + 1 < n
            ):
                self.analyse(args[i + 1].text, depth + 1)
                return []
            if program in ("su", "runuser", "script") and text.startswith("--command="):
                self.analyse(text.split("=", 1)[1], depth + 1)
                return []
            if text.startswith("-") and len(text) > 1:
                if text in arg_opts:
                    i += 2
                else:
                    i += 1
                continue
            break
        skip = positional
        while skip > 0 and i < n:
            if program == "chroot":
                self.path_candidate(self.expanded(args[i]), True)
            if program == "flock":
                self.path_candidate(self.expanded(args[i]), True)
            i += 1
            skip -= 1
        rest = args[i:]
        if program == "watch" and rest:
            self.analyse(" ".join(w.text for w in rest), depth + 1)
            return []
        if program in ("su", "sg", "runuser"):
            return []
        return rest

    def shell(self, args: list[_Word], depth: int) -> None:
        i = 0
        n = len(args)
        wants_code = False
        while i < n:
            text = args[i].text
            if text == "--":
                i += 1
                break
            if text in _SHELL_ARG_OPTS:
                i += 2
                continue
            if text in ("-c", "-Command", "-command", "/c", "/C") or (
                text.startswith("-")
                and not text.startswith("--")
                and "c" in text[1:]
                and text[1:].isalpha()
            ):
                wants_code = True
                i += 1
                continue
            if text.startswith("-") or text.startswith("+"):
                i += 1
                continue
            break
        if wants_code and i < n:
            self.analyse(args[i].text, depth + 1)
        elif i < n:
            self.path_candidate(self.expanded(args[i]), True)
            self.acc.flags |= _R

    def interpreter(self, kind: str, args: list[_Word], depth: int) -> None:
        acc = self.acc
        letters = _CODE_LETTERS.get(kind, "")
        i = 0
        n = len(args)
        found = False
        if kind == "awk":
            has_f = False
            while i < n:
                text = args[i].text
                if text in ("-f", "--file") and i + 1 < n:
                    has_f = True
                    self.path_candidate(self.expanded(args[i + 1]), True)
                    i += 2
                    continue
                if text in ("-F", "-v", "--assign", "--field-separator") and i + 1 < n:
                    i += 2
                    continue
                if text.startswith("-") and len(text) > 1:
                    i += 1
                    continue
                break
            if not has_f and i < n:
                acc.code(args[i].text, 0, self.state.cwds, self.state.vars, depth + 1)
            return
        if kind == "node" and args and args[0].text == "eval" and n > 1:
            acc.code(args[1].text, 0, self.state.cwds, self.state.vars, depth + 1)
            return
        while i < n:
            text = args[i].text
            if text == "--":
                break
            if text.startswith("--"):
                name, eq, value = text.partition("=")
                if name in _CODE_LONG:
                    if eq:
                        acc.code(value, 0, self.state.cwds, self.state.vars, depth + 1)
                    elif i + 1 < n:
                        acc.code(args[i + 1].text, 0, self.state.cwds, self.state.vars, depth + 1)
                        i += 1
                    found = True
                i += 1
                continue
            if text.startswith("-") and len(text) > 1 and letters:
                body = text[1:]
                for index, letter in enumerate(body):
                    if letter in letters:
                        attached = body[index + 1 :]
                        if attached:
                            acc.code(attached, 0, self.state.cwds, self.state.vars, depth + 1)
                        elif i + 1 < n:
                            acc.code(
                                args[i + 1].text, 0, self.state.cwds, self.state.vars, depth + 1
                            )
                            i += 1
                        found = True
                        break
                    if not letter.isalpha():
                        break
                i += 1
                continue
            if text.startswith("-"):
                i += 1
                continue
            break
        if not found and i < n and kind not in ("osa",):
            self.path_candidate(self.expanded(args[i]), True)  # script file
            acc.flags |= _R

    def host_program(self, program: str, args: list[_Word]) -> None:
        letters = _GENERIC_OPT_ARG.get(program, frozenset())
        positionals = self.positionals(args, letters, frozenset())
        acc = self.acc
        if program in ("dig", "nslookup", "host", "drill", "kdig", "whois"):
            for text in positionals:
                if text.startswith("@"):
                    acc.url_value(text[1:], "dns")
                elif text.lower() not in _DNS_TYPES and not text.startswith("+"):
                    acc.url_value(text, "dns")
            return
        if program in ("nmap", "fping", "masscan"):
            for text in positionals:
                acc.url_value(text.split("/", 1)[0], "tcp")
            return
        if positionals:
            target = positionals[0]
            if "@" in target and "://" not in target:
                target = target.rsplit("@", 1)[1]
            acc.url_value(
                target, "ssh" if program in ("mosh", "ssh-copy-id", "ssh-keyscan") else "tcp"
            )

    def host_port_program(self, program: str, args: list[_Word]) -> None:
        positionals = self.positionals(args, frozenset("bceElnpPsSX"), frozenset())
        if positionals:
            host = positionals[0]
            port = positionals[1] if len(positionals) > 1 else str(_HOST_PORT_PROGS[program])
            self.host_endpoint(host, port if port.isdigit() else str(_HOST_PORT_PROGS[program]))

    def host_endpoint(self, host: str, port: str) -> None:
        acc = self.acc
        if "://" in host:
            acc.url_value(host, None)
            return
        if "@" in host:
            host = host.rsplit("@", 1)[1]
        hosts = _clean_hosts(host.strip("[]") if host.startswith("[") else host)
        for h in hosts:
            acc.add_host(h)
            if port.isdigit() and int(port) <= 65535:
                acc.add_endpoint(h, int(port))
                inner = embedded_ipv4(h) if ":" in h else ""
                if inner:
                    acc.add_endpoint(inner, int(port))

    def positionals(
        self,
        args: list[_Word],
        short_arg: frozenset[str],
        long_arg: frozenset[str],
        values: list[tuple[str, str]] | None = None,
    ) -> list[str]:
        """Positional words of an argv, skipping options and their values (collected)."""
        out: list[str] = []
        i = 0
        n = len(args)
        while i < n:
            text = self.expanded(args[i])
            if text == "--":
                out.extend(self.expanded(w) for w in args[i + 1 :])
                break
            if text.startswith("--") and len(text) > 2:
                name, eq, value = text[2:].partition("=")
                if name in long_arg:
                    if not eq and i + 1 < n:
                        value = self.expanded(args[i + 1])
                        i += 1
                    if values is not None:
                        values.append(("--" + name, value))
                i += 1
                continue
            if text.startswith("-") and len(text) > 1:
                letter, attached, takes_next = _short_value(text, short_arg)
                if takes_next and i + 1 < n:
                    value = self.expanded(args[i + 1])
                    if values is not None:
                        values.append(("-" + letter, value))
                    i += 2
                    continue
                if attached is not None and values is not None:
                    values.append(("-" + letter, attached))
                i += 1
                continue
            out.append(text)
            i += 1
        return out

    def url_program(self, program: str, args: list[_Word]) -> None:
        acc = self.acc
        scheme = _URL_PROGS[program]
        values: list[tuple[str, str]] = []
        if program == "curl":
            positionals = self.positionals(args, _CURL_SHORT_ARG, _CURL_LONG_ARG, values)
        elif program in ("wget", "wget2"):
            positionals = self.positionals(args, _WGET_SHORT_ARG, _WGET_LONG_ARG, values)
        else:
            positionals = self.positionals(args, frozenset("oOdHuUXAeT"), frozenset(), values)
        if program in ("http", "https", "xh", "xhs", "httpie") and positionals:
            if positionals[0].isupper() and positionals[0].isalpha() and len(positionals) > 1:
                positionals = positionals[1:]
            target = positionals[0]
            if target.startswith(":"):
                target = "localhost" + target
            self.add_url_arg(target, scheme)
            for item in positionals[1:]:
                for sep in ("=@", ":=@", "@"):
                    if sep in item:
                        self.path_candidate(item.split(sep, 1)[1], True)
                        acc.flags |= _R
                        break
            return
        for text in positionals:
            self.add_url_arg(text, scheme)
        for option, value in values:
            self.url_option(program, option, value)

    def add_url_arg(self, text: str, scheme: str) -> None:
        acc = self.acc
        if not text:
            return
        if "{" in text and "}" in text:
            for item in _brace_expand(text):
                acc.url_value(item, scheme)
        if acc.url_value(text, scheme):
            acc.flags |= _N

    def url_option(self, program: str, option: str, value: str) -> None:
        acc = self.acc
        short = option if not option.startswith("--") else ""
        long = option[2:] if option.startswith("--") else ""
        if long == "url":
            self.add_url_arg(value, "http")
        elif short == "-x" or long in (
            "proxy",
            "preproxy",
            "doh-url",
            "socks4",
            "socks4a",
            "socks5",
            "socks5-hostname",
        ):
            self.add_url_arg(value, "http")
        elif long == "resolve" or long == "connect-to":
            parts = value.split(":")
            if long == "resolve" and len(parts) >= 3:
                self.host_endpoint(parts[0], parts[1])
                for addr in ":".join(parts[2:]).split(","):
                    self.host_endpoint(addr.strip("[]"), parts[1])
            elif long == "connect-to" and len(parts) >= 4:
                self.host_endpoint(parts[2], parts[3])
        elif short in ("-d", "-F") or long.startswith(("data", "json", "form")):
            if value.startswith("@") and value != "@-":
                self.path_candidate(value[1:], True)
                acc.flags |= _R
            for sep in ("=@", "=<", "@"):
                if sep in value and not value.startswith("@"):
                    target = value.split(sep, 1)[1].split(";", 1)[0]
                    if target and target != "-":
                        self.path_candidate(target, True)
                        acc.flags |= _R
                    break
        elif short in ("-T", "-K", "-E", "-i") or long in (
            "upload-file",
            "config",
            "cacert",
            "cert",
            "key",
            "netrc-file",
            "unix-socket",
            "abstract-unix-socket",
            "input-file",
            "post-file",
            "body-file",
            "load-cookies",
            "certificate",
            "private-key",
            "ca-certificate",
            "proxy-cacert",
            "proxy-cert",
            "proxy-key",
        ):
            self.path_candidate(value, True)
            acc.flags |= _R
        elif short in ("-o", "-D", "-c", "-O", "-a", "-P") or long in (
            "output",
            "dump-header",
            "cookie-jar",
            "trace",
            "trace-ascii",
            "stderr",
            "output-dir",
            "output-document",
            "output-file",
            "append-output",
            "directory-prefix",
            "save-cookies",
            "etag-save",
            "hsts",
            "alt-svc",
        ):
            if value != "-":
                self.path_candidate(value, True)
                acc.flags |= _W
        elif short in ("-H", "-w") and value.startswith("@"):
            self.path_candidate(value[1:], True)
            acc.flags |= _R
        elif short == "-e" or long == "execute":
            acc.scan_generic(value, 0, self.state.cwds, self.state.pvars)
            if "=" in value:
                key, _, setting = value.partition("=")
                if "proxy" in key.lower():
                    self.add_url_arg(setting, "http")

    def db_program(self, program: str, args: list[_Word]) -> None:
        host_opts, port_opts, default = _DB_HOST_OPTS[program]
        host = ""
        port = str(default)
        texts = [self.expanded(w) for w in args]
        for index, text in enumerate(texts):
            for opt in host_opts:
                if text == opt and index + 1 < len(texts):
                    host = texts[index + 1]
                elif text.startswith(opt + "=") or (
                    len(opt) == 2 and text.startswith(opt) and len(text) > 2 and opt != text
                ):
                    host = text[len(opt) + (1 if text.startswith(opt + "=") else 0) :]
            for opt in port_opts:
                if text == opt and index + 1 < len(texts):
                    port = texts[index + 1]
                elif text.startswith(opt + "="):
                    port = text.split("=", 1)[1]
        if host:
            self.host_endpoint(host, port)
        self.acc.flags |= _N


def _add_cwd(shell: _Shell, word: _Word) -> None:
    """A directory later relative words resolve against (`cd`, `tar -C`, `git -C`, `make -C`).
    Directories accumulate rather than replace: subshells and pipes make the real cwd
    uncertain, and resolving against one more directory only adds facts."""
    state = shell.state
    ctx = shell.acc.ctx
    new: list[str] = []
    for value in shell.variants(word):
        for base in list(state.cwds):
            out = _resolve_path(value, _M_SOFT, base, ctx, state.pvars)
            new.extend(out.paths[:1])
    for path in new:
        shell.acc.add_path(path)
        if path not in state.cwds:
            if len(state.cwds) >= MAX_CWDS:
                state.cwds.pop(0)
            state.cwds.append(path)
            state.cwd_changed = True


def _h_make(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    for index, word in enumerate(args):
        if word.text in ("-C", "--directory") and index + 1 < len(args):
            _add_cwd(shell, args[index + 1])


def _h_cd(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    targets = [w for w in args if not (w.text.startswith("-") and len(w.text) > 1)]
    if not targets:
        _add_cwd(shell, _Word("~", [], False))
    elif targets[0].text != "-":
        _add_cwd(shell, targets[0])


def _h_eval(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    if args:
        shell.analyse(" ".join(w.text for w in args), depth + 1)


def _h_export(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    for word in args:
        match = _ASSIGN_RE.match(word.text)
        if match:
            shell.assignment(match.group(1), word, depth)


def _h_alias(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    for word in args:
        if "=" in word.text:
            shell.analyse(word.text.split("=", 1)[1], depth + 1)


def _h_find(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    i = 0
    n = len(args)
    while i < n:
        text = args[i].text
        if text in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < n and args[j].text not in (";", "+"):
                j += 1
            inner = args[i + 1 : j]
            if inner:
                shell.run(list(inner), depth + 1)
            i = j + 1
            continue
        if text in ("-fprint", "-fprint0", "-fls", "-fprintf") and i + 1 < n:
            shell.path_candidate(shell.expanded(args[i + 1]), True)
        i += 1


def _h_nc(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    values: list[tuple[str, str]] = []
    positionals = shell.positionals(
        args,
        _NC_SHORT_ARG,
        frozenset({"exec", "sh-exec", "lua-exec", "proxy", "source", "output"}),
        values,
    )
    listen = any(
        w.text.startswith("-") and "l" in w.text[1:] and not w.text.startswith("--") for w in args
    ) or any(w.text == "--listen" for w in args)
    for option, value in values:
        if option in ("-e", "--exec", "--lua-exec"):
            shell.path_candidate(value, True)
            shell.acc.programs.setdefault(_basename(value), None)
        elif option in ("-c", "--sh-exec"):
            shell.analyse(value, depth + 1)
        elif option in ("-x", "--proxy"):
            host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "1080")
            shell.host_endpoint(host or value, port or "1080")
    if not positionals:
        return
    if listen and positionals[0].isdigit():
        return
    host = positionals[0]
    ports = positionals[1:]
    for port in ports[:16]:
        first = port.split("-", 1)[0]
        shell.host_endpoint(host, first if first.isdigit() else "")
    if not ports:
        shell.host_endpoint(host, "")


def _h_ssh(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    values: list[tuple[str, str]] = []
    positionals = shell.positionals(args, _SSH_SHORT_ARG, frozenset(), values)
    port = "22"
    hostname_override = ""
    for option, value in values:
        if option == "-p":
            port = value
        elif option in ("-i", "-F", "-E", "-S"):
            shell.path_candidate(value, True)
            shell.acc.flags |= _R
        elif option == "-J":
            for jump in value.split(","):
                _ssh_destination(shell, jump, "22")
        elif option in ("-L", "-R", "-W"):
            parts = value.strip("[]").split(":")
            if option == "-W" and len(parts) == 2:
                shell.host_endpoint(parts[0], parts[1])
            elif len(parts) >= 3:
                shell.host_endpoint(parts[-2], parts[-1])
        elif option == "-o":
            split = re.match(r"\s*([A-Za-z]+)\s*[= ]\s*(.*)\Z", value, re.S)
            key, setting = (split.group(1), split.group(2)) if split else (value, "")
            low = key.lower()
            if low in ("proxycommand", "localcommand", "remotecommand", "knownhostscommand"):
                shell.analyse(setting, depth + 1)
            elif low == "proxyjump":
                for jump in setting.split(","):
                    _ssh_destination(shell, jump, "22")
            elif low == "hostname":
                hostname_override = setting.strip()
            elif low == "port":
                port = setting.strip()
            elif low in ("identityfile", "userknownhostsfile", "certificatefile", "controlpath"):
                shell.path_candidate(setting.strip(), True)
    if positionals:
        _ssh_destination(shell, positionals[0], port)
    if hostname_override:
        shell.host_endpoint(hostname_override, port)


def _ssh_destination(shell: _Shell, dest: str, port: str) -> None:
    if "://" in dest:
        shell.acc.url_value(dest, None)
        return
    host = dest.rsplit("@", 1)[-1]
    if host.startswith("["):
        end = host.find("]")
        inner = host[1:end]
        after = host[end + 1 :]
        shell.host_endpoint(inner, after[1:] if after.startswith(":") else port)
        return
    if host.count(":") == 1:
        host, _, maybe_port = host.partition(":")
        if maybe_port.isdigit():
            port = maybe_port
    shell.host_endpoint(host, port)


_SCP_REMOTE = re.compile(r"(?:[^@/:\s]+@)?(\[[^\]]+\]|[^@/:\s\[\]]+):(:?)")


def _h_scp(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    values: list[tuple[str, str]] = []
    letters = _SCP_SHORT_ARG if program != "rsync" else frozenset("efBTM")
    longs = frozenset(
        {
            "rsh",
            "rsync-path",
            "port",
            "files-from",
            "exclude-from",
            "include-from",
            "password-file",
            "log-file",
            "temp-dir",
            "backup-dir",
            "partial-dir",
            "compare-dest",
            "copy-dest",
            "link-dest",
            "filter",
            "exclude",
            "include",
        }
    )
    positionals = shell.positionals(
        args, letters, longs if program == "rsync" else frozenset(), values
    )
    port = "873" if program == "rsync" else "22"
    for option, value in values:
        if option in ("-P", "--port") and program != "rsync":
            port = value
        elif option == "--port":
            port = value
        elif option in ("-e", "--rsh", "--rsync-path", "-S"):
            shell.analyse(value, depth + 1)
        elif option in (
            "-i",
            "-F",
            "--files-from",
            "--exclude-from",
            "--include-from",
            "--password-file",
        ):
            shell.path_candidate(value, True)
        elif option == "-J":
            for jump in value.split(","):
                _ssh_destination(shell, jump, "22")
    for text in positionals:
        if "://" in text:
            shell.acc.url_value(text, None)
            continue
        if text.startswith(("/", "./", "../", "~")):
            continue
        match = _SCP_REMOTE.match(text)
        if match:
            host = match.group(1).strip("[]")
            daemon = match.group(2) == ":"
            shell.host_endpoint(host, "873" if daemon else ("22" if program == "rsync" else port))


def _h_git(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    i = 0
    n = len(args)
    while i < n:
        text = args[i].text
        if text == "-c" and i + 1 < n:
            setting = args[i + 1].text
            key, _, value = setting.partition("=")
            low = key.lower()
            if low in (
                "core.sshcommand",
                "core.pager",
                "core.editor",
                "core.fsmonitor",
                "credential.helper",
                "core.askpass",
                "gpg.program",
                "sequence.editor",
                "diff.external",
                "core.hookspath",
            ) or low.startswith(("alias.", "filter.", "diff.")):
                shell.analyse(value.lstrip("!"), depth + 1)
            i += 2
            continue
        if text == "-C" and i + 1 < n:
            _add_cwd(shell, args[i + 1])
            i += 2
            continue
        if text.startswith("-"):
            i += 1
            continue
        break
    sub = args[i].text if i < n else ""
    rest = args[i + 1 :]
    for word in rest:
        text = shell.expanded(word)
        if text.startswith("ext::"):
            # git's ext transport runs a command: words split on spaces, "% " is a literal space.
            parts = re.split(r"(?<!%) ", text[5:])
            argv = [_Word(p.replace("% ", " ").replace("%%", "%"), [], True) for p in parts if p]
            if argv:
                shell.run(argv, depth + 1)
            continue
        if "://" in text:
            if shell.acc.url_value(text, None):
                shell.acc.flags |= _N
            continue
        if sub in _NET_SUBCOMMANDS["git"] and not text.startswith(("-", "/", "./", "../", "~")):
            match = _SCP_REMOTE.match(text)
            if match and "/" not in text[: match.end()]:
                shell.host_endpoint(match.group(1).strip("[]"), "22")
                shell.acc.flags |= _N
    if sub == "config" and len(rest) >= 2:
        key = rest[0].text.lower()
        if key in (
            "core.sshcommand",
            "core.pager",
            "core.editor",
            "core.fsmonitor",
        ) or key.startswith("alias."):
            shell.analyse(rest[1].text.lstrip("!"), depth + 1)


_SOCAT_NET = re.compile(
    r"(?i)(?:tcp[46]?|tcp[46]?-connect|udp[46]?|udp[46]?-connect|udp[46]?-sendto|ssl|openssl|openssl-connect|"
    r"socks4a?|socks5|sctp[46]?|sctp[46]?-connect|dccp-connect)\Z"
)
_SOCAT_EXEC = re.compile(r"(?i)(?:exec|system)\Z")
_SOCAT_FILE = re.compile(
    r"(?i)(?:open|file|gopen|create|pipe|unix-connect|unix-client|unix|unix-sendto|readline)\Z"
)


def _h_socat(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    for word in args:
        text = shell.expanded(word)
        if text.startswith("-") and text not in ("-", "-,"):
            continue
        kind, sep, params = text.partition(":")
        if not sep:
            continue
        body = params.split(",", 1)[0]
        if _SOCAT_NET.match(kind):
            host, _, port = body.rpartition(":")
            if not host:
                host, port = body, ""
            shell.host_endpoint(host.strip("[]"), port)
            shell.acc.flags |= _N
        elif kind.lower() in ("proxy", "proxy-connect"):
            pieces = body.split(":")
            if len(pieces) >= 3:
                shell.host_endpoint(pieces[0], "8080")
                shell.host_endpoint(pieces[1], pieces[2])
            shell.acc.flags |= _N
        elif _SOCAT_EXEC.match(kind):
            shell.analyse(params, depth + 1)
        elif _SOCAT_FILE.match(kind):
            shell.path_candidate(body, True)


def _h_openssl(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    texts = [shell.expanded(w) for w in args]
    if texts and texts[0] in ("s_client", "s_time"):
        shell.acc.flags |= _N
        host = ""
        port = "443"
        for index, text in enumerate(texts):
            if text == "-connect" and index + 1 < len(texts):
                value = texts[index + 1]
                if value.startswith("["):
                    end = value.find("]")
                    host, port = value[1:end], value[end + 2 :] or "443"
                else:
                    host, _, port = value.rpartition(":")
                    if not host:
                        host, port = value, "443"
            elif text == "-host" and index + 1 < len(texts):
                host = texts[index + 1]
            elif text == "-port" and index + 1 < len(texts):
                port = texts[index + 1]
        shell.host_endpoint(host or "localhost", port)
    for index, text in enumerate(texts):
        if text in ("-in", "-out", "-inkey", "-key", "-cert", "-passin") and index + 1 < len(texts):
            value = texts[index + 1]
            if value.startswith("file:"):
                value = value[5:]
            shell.path_candidate(value, True)
            if text == "-out":
                shell.acc.flags |= _W
            else:
                shell.acc.flags |= _R


def _h_dd(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    for word in args:
        text = shell.expanded(word)
        if text.startswith(("if=", "of=")):
            shell.path_candidate(text[3:], True)
            shell.acc.flags |= _R if text.startswith("if=") else _W


def _h_tar(shell: _Shell, program: str, args: list[_Word], depth: int) -> None:
    for index, word in enumerate(args):
        text = word.text
        for prefix in (
            "--to-command=",
            "--use-compress-program=",
            "--checkpoint-action=exec=",
            "--info-script=",
            "--new-volume-script=",
            "--rsh-command=",
        ):
            if text.startswith(prefix):
                shell.analyse(text[len(prefix) :], depth + 1)
        if text in ("-I", "--use-compress-program", "--to-command", "-F") and index + 1 < len(args):
            shell.analyse(args[index + 1].text, depth + 1)
        if text in ("-C", "--directory") and index + 1 < len(args):
            _add_cwd(shell, args[index + 1])
        elif text.startswith("--directory="):
            _add_cwd(shell, _Word(text.split("=", 1)[1], [], word.quoted))


_HANDLERS = {
    "cd": _h_cd,
    "pushd": _h_cd,
    "eval": _h_eval,
    "export": _h_export,
    "declare": _h_export,
    "typeset": _h_export,
    "local": _h_export,
    "readonly": _h_export,
    "alias": _h_alias,
    "find": _h_find,
    "nc": _h_nc,
    "ncat": _h_nc,
    "netcat": _h_nc,
    "ssh": _h_ssh,
    "scp": _h_scp,
    "sftp": _h_scp,
    "rsync": _h_scp,
    "git": _h_git,
    "socat": _h_socat,
    "openssl": _h_openssl,
    "dd": _h_dd,
    "tar": _h_tar,
    "bsdtar": _h_tar,
    "gtar": _h_tar,
    "make": _h_make,
    "gmake": _h_make,
}

# wrapper -> (options that take a value, positional words to skip before the command)
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "sudo": (
        frozenset(
            {
                "-u",
                "-g",
                "-h",
                "-p",
                "-C",
                "-D",
                "-r",
                "-t",
                "-U",
                "-T",
                "--user",
                "--group",
                "--host",
                "--prompt",
                "--chdir",
                "--role",
                "--type",
                "--other-user",
                "--command-timeout",
                "--close-from",
            }
        ),
        0,
    ),
    "doas": (frozenset({"-u", "-C"}), 0),
    "env": (frozenset({"-u", "--unset", "-C", "--chdir", "-P"}), 0),
    "nohup": (frozenset(), 0),
    "exec": (frozenset({"-a"}), 0),
    "command": (frozenset(), 0),
    "builtin": (frozenset(), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "ionice": (frozenset({"-c", "-n", "-p", "-P", "-u", "--class", "--classdata"}), 0),
    "time": (frozenset({"-f", "-o", "--format", "--output"}), 0),
    "timeout": (frozenset({"-s", "-k", "--signal", "--kill-after"}), 1),
    "gtimeout": (frozenset({"-s", "-k", "--signal", "--kill-after"}), 1),
    "xargs": (
        frozenset(
            {
                "-I",
                "-n",
                "-P",
                "-L",
                "-s",
                "-d",
                "-E",
                "-a",
                "--max-args",
                "--max-procs",
                "--replace",
                "--delimiter",
                "--arg-file",
                "--max-lines",
                "--max-chars",
                "--eof",
            }
        ),
        0,
    ),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "setsid": (frozenset(), 0),
    "chronic": (frozenset(), 0),
    "unbuffer": (frozenset(), 0),
    "caffeinate": (frozenset({"-t", "-w"}), 0),
    "taskset": (frozenset({"-c", "-p"}), 1),
    "numactl": (
        frozenset(
            {
                "-C",
                "-N",
                "-m",
                "-p",
                "-i",
                "--physcpubind",
                "--cpunodebind",
                "--membind",
                "--preferred",
                "--interleave",
            }
        ),
        0,
    ),
    "chroot": (frozenset({"--userspec", "--groups"}), 1),
    "flock": (frozenset({"-w", "-E", "--timeout", "--conflict-exit-code"}), 1),
    "strace": (
        frozenset({"-o", "-e", "-p", "-s", "-u", "-E", "-P", "-a", "-b", "-I", "-S", "-X"}),
        0,
    ),
    "ltrace": (frozenset({"-o", "-e", "-p", "-s", "-u", "-a", "-n", "-l"}), 0),
    "watch": (frozenset({"-n", "-d", "--interval", "--differences"}), 0),
    "proxychains": (frozenset({"-f"}), 0),
    "proxychains4": (frozenset({"-f"}), 0),
    "torsocks": (frozenset({"-u", "-p", "-a", "-P"}), 0),
    "tsocks": (frozenset(), 0),
    "firejail": (frozenset(), 0),
    "busybox": (frozenset(), 0),
    "su": (frozenset({"-s", "-g", "-G", "--shell", "--group"}), 0),
    "runuser": (frozenset({"-u", "-g", "-G", "-s", "--user", "--group"}), 0),
    "sg": (frozenset(), 1),
    "script": (
        frozenset(
            {"-t", "-T", "-I", "-O", "-B", "-E", "--log-in", "--log-out", "--log-io", "--timing"}
        ),
        0,
    ),
    "fakeroot": (frozenset({"-l", "-s", "-i", "--lib", "--faked"}), 0),
    "unshare": (frozenset(), 0),
    "nsenter": (frozenset({"-t", "--target"}), 0),
    "catchsegv": (frozenset(), 0),
    "systemd-run": (
        frozenset({"-p", "-E", "--unit", "--property", "--setenv", "--uid", "--gid"}),
        0,
    ),
    "cgexec": (frozenset({"-g"}), 0),
    "valgrind": (frozenset(), 0),
    "nocache": (frozenset(), 0),
    "trickle": (frozenset({"-d", "-u", "-w", "-t", "-l", "-n"}), 0),
    "parallel": (frozenset({"-j", "-S", "--jobs", "--sshlogin"}), 0),
    "doppler": (frozenset(), 0),
    "op": (frozenset(), 0),
}


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

_EMPTY_ARGS: Mapping[str, Any] = {}
_PAIR_TYPES = frozenset({str, int, bool, type(None)})
_MAX_FAST_PAIRS = 16


class _Pair:
    """Facts of one top-level `key: scalar` pair, memoised per (environment, classifier).

    Most calls are a handful of short scalar arguments that repeat (`{"path": "src/x.py"}`), and
    their facts depend only on the key's role, the value and the environment — so they are
    computed once by the full walker and reused. Whatever depends on the whole call (joining
    relative values with a directory argument, realpath, the tool's own effects) is still done
    per call.
    """

    __slots__ = (
        "anchor",
        "commands",
        "endpoints",
        "flags",
        "hosts",
        "joinable",
        "paths",
        "phys",
        "programs",
        "urls",
    )

    def __init__(self, acc: _Acc) -> None:
        self.paths = tuple(acc.paths)
        self.phys = tuple(acc.phys)
        self.urls = tuple(acc.urls)
        self.hosts = tuple(acc.hosts)
        self.endpoints = tuple(acc.endpoints)
        self.commands = tuple(acc.commands)
        self.programs = tuple(acc.programs)
        self.flags = acc.flags
        self.anchor = acc.anchors[0] if acc.anchors else None
        self.joinable = bool(acc.relatives or acc.cmd_strings)


def _pair_facts(ctx: _Ctx, classifier: Classifier, key: str, value: Any) -> _Pair:
    acc = _Acc(ctx, classifier)
    acc.walk_dict({key: value}, _GENERIC, 0)
    return _Pair(acc)


def _fast_facts(ctx: _Ctx, classifier: Classifier, arguments: dict[Any, Any]) -> list[_Pair] | None:
    """Memoised facts for a small object of scalar values; None when the full walk is needed."""
    memo = classifier._pair_memo
    pairs: list[_Pair] = []
    for key, value in arguments.items():
        kind = type(value)
        if (
            type(key) is not _STR
            or kind not in _PAIR_TYPES
            or (kind is _STR and len(value) > _CACHEABLE_LEN)
        ):
            return None
        memo_key = (ctx, key, value, kind)
        pair = memo.get(memo_key)
        if pair is None:
            pair = _pair_facts(ctx, classifier, key, value)
            if len(memo) >= _CACHE_LIMIT:
                memo.clear()
            memo[memo_key] = pair
        pairs.append(pair)
    if (
        len(pairs) > 1
        and any(p.anchor is not None for p in pairs)
        and any(p.joinable for p in pairs)
    ):
        return None
    return pairs


def _finish(
    tool: str,
    arguments: Any,
    classifier: Classifier,
    ctx: _Ctx,
    flags: int,
    paths: tuple[str, ...],
    phys: Sequence[str],
    urls: tuple[str, ...],
    hosts: tuple[str, ...],
    endpoints: tuple[str, ...],
    commands: tuple[str, ...],
    programs: tuple[str, ...],
    annotations: Mapping[str, Any] | None,
) -> CallFacts:
    flags |= classifier.tool_flags(tool)
    if annotations is not None and not isinstance(annotations, Mapping):
        annotations = None
    if annotations and annotations.get("destructiveHint") is True:
        flags |= _W  # an untrusted hint may add an effect, never remove one
    if ctx.resolve and paths:
        paths = _with_realpaths(paths, phys)
    if paths and not flags & (_R | _W):
        flags |= _R  # a tool nobody classified that receives a path is assumed to read it
    return CallFacts(
        tool,
        arguments,
        paths,
        urls,
        hosts,
        endpoints,
        commands,
        programs,
        bool(flags & _R),
        bool(flags & _W),
        bool(flags & _S),
        bool(flags & _N),
        annotations if annotations is not None else {},
    )


def _with_realpaths(paths: tuple[str, ...], phys: Sequence[str]) -> tuple[str, ...]:
    """Add realpath() of every path and of every raw spelling with `..` (physical resolution:
    `/ws/link/../x` follows `link` first). /proc/self is the proxy, not the server: skipped."""
    if len(paths) == 1 and not phys:  # the common case, without building a dict
        path = paths[0]
        if path.startswith("/proc/"):
            return paths
        real = _realpath(path)
        return paths if real is None or real == path else (path, real)
    out: dict[str, None] = dict.fromkeys(paths)
    for path in (*paths, *phys):
        if path.startswith("/proc/"):
            continue
        real = _realpath(path)
        if real is not None:
            out.setdefault(real, None)
    return tuple(out)


def extract(
    tool: Any,
    arguments: Any,
    classifier: Classifier,
    env: Environment,
    annotations: Mapping[str, Any] | None = None,
) -> CallFacts:
    """Derive the facts rules see from one tools/call. Raises ExtractionError to fail closed.

    `arguments` must be a JSON object (None/missing is `{}`); anything else — a list, a string,
    a number, non-JSON values, NUL bytes, lone surrogates, NaN, nesting deeper than 64, more than
    100,000 strings and keys — is refused rather than guessed at.
    """
    if type(tool) is not str:
        if isinstance(tool, str):
            tool = str.__str__(tool)
        else:
            raise ExtractionError(f"tool name must be a string, got {type(tool).__name__}")
    if "\x00" in tool:
        raise ExtractionError("NUL byte in tool name")
    if arguments is None:
        arguments = _EMPTY_ARGS
    elif type(arguments) is not dict:
        if not isinstance(arguments, Mapping):
            raise ExtractionError(
                f"arguments must be a JSON object, got {type(arguments).__name__}"
            )
    last = _LAST_CTX
    ctx = last[1] if last is not None and last[0] is env else _ctx_for(env)
    if (
        type(arguments) is dict
        and len(arguments) == 1
        and (annotations is None or type(annotations) is dict)
    ):
        # Hot path, inlined: one memoised scalar argument (`{"path": "src/app.py"}`).
        for key, value in arguments.items():
            kind = type(value)
            pair = (
                classifier._pair_memo.get((ctx, key, value, kind)) if kind in _PAIR_TYPES else None
            )
            if pair is not None:
                flags = classifier._tool_memo.get(tool)
                if flags is None:
                    flags = classifier.tool_flags(tool)
                flags |= pair.flags
                if annotations and annotations.get("destructiveHint") is True:
                    flags |= _W  # an untrusted hint may add an effect, never remove one
                paths = pair.paths
                if paths:
                    if not flags & 3:
                        flags |= _R
                    if ctx.resolve:
                        paths = _with_realpaths(paths, pair.phys)
                return CallFacts(
                    tool,
                    arguments,
                    paths,
                    pair.urls,
                    pair.hosts,
                    pair.endpoints,
                    pair.commands,
                    pair.programs,
                    bool(flags & _R),
                    bool(flags & _W),
                    bool(flags & _S),
                    bool(flags & _N),
                    annotations if annotations is not None else {},
                )
    if type(arguments) is dict and len(arguments) <= _MAX_FAST_PAIRS:
        pairs = _fast_facts(ctx, classifier, arguments)
        if pairs is not None:
            if len(pairs) == 1:
                p = pairs[0]
                return _finish(
                    tool,
                    arguments,
                    classifier,
                    ctx,
                    p.flags,
                    p.paths,
                    p.phys,
                    p.urls,
                    p.hosts,
                    p.endpoints,
                    p.commands,
                    p.programs,
                    annotations,
                )
            return _merge_pairs(tool, arguments, classifier, ctx, pairs, annotations)
    acc = _Acc(ctx, classifier)
    if arguments:
        acc.walk_dict(arguments if type(arguments) is dict else dict(arguments), _GENERIC, 0)
        if acc.anchors:
            acc.join_anchors()
    return _finish(
        tool,
        arguments,
        classifier,
        ctx,
        acc.flags,
        tuple(acc.paths),
        acc.phys,
        tuple(acc.urls),
        tuple(acc.hosts),
        tuple(acc.endpoints),
        tuple(acc.commands),
        tuple(acc.programs),
        annotations,
    )


def _merge_pairs(
    tool: str,
    arguments: Any,
    classifier: Classifier,
    ctx: _Ctx,
    pairs: list[_Pair],
    annotations: Mapping[str, Any] | None,
) -> CallFacts:
    paths: dict[str, None] = {}
    urls: dict[str, None] = {}
    hosts: dict[str, None] = {}
    endpoints: dict[str, None] = {}
    programs: dict[str, None] = {}
    commands: list[str] = []
    phys: list[str] = []
    flags = 0
    for p in pairs:
        flags |= p.flags
        if p.paths:
            paths.update(dict.fromkeys(p.paths))
        if p.urls:
            urls.update(dict.fromkeys(p.urls))
            hosts.update(dict.fromkeys(p.hosts))
            endpoints.update(dict.fromkeys(p.endpoints))
        elif p.hosts:
            hosts.update(dict.fromkeys(p.hosts))
            endpoints.update(dict.fromkeys(p.endpoints))
        if p.commands:
            commands.extend(p.commands)
            programs.update(dict.fromkeys(p.programs))
        elif p.programs:
            programs.update(dict.fromkeys(p.programs))
        if p.phys:
            phys.extend(p.phys)
    return _finish(
        tool,
        arguments,
        classifier,
        ctx,
        flags,
        tuple(paths),
        phys,
        tuple(urls),
        tuple(hosts),
        tuple(endpoints),
        tuple(commands),
        tuple(programs),
        annotations,
    )
