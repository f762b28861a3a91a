"""Tool and argument classification: which effects a tool has, which role a key plays."""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcp_defense.policy.extract.limits import (
    _CACHE_LIMIT,
    _GENERIC,
    _PATH,
    _ROLE_CODE,
    _ROLE_PRIORITY,
    _SOFT_PATH,
    _URL,
    ROLES,
    _flags,
)

if TYPE_CHECKING:
    from mcp_defense.policy.extract.walk import _Pair


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
# Shape bits of a key (`Classifier.key_info`): an argv-like list key; a key that itself looks
# like a path or URL (`{"/home/a/.ssh/id_rsa": …}`) and is scanned as a value.
KEY_ARGVISH, KEY_PATHISH = 1, 2


# Keys that name an endpoint or a connection string (`db_host`, `smtp_server`, `dsn`,
# `connection_string`, `kafka_brokers`): their value is a destination, whatever else it looks like.
_ENDPOINTISH_KEY_ENDS = (
    "url",
    "uri",
    "host",
    "hostname",
    "hosts",
    "server",
    "servers",
    "endpoint",
    "endpoints",
    "addr",
    "dsn",
    "broker",
    "brokers",
    "connectionstring",
    "connstring",
    "connstr",
    "socket",
)


def _heuristic_role(squashed: str) -> int:
    """Role for a key the policy did not classify, guessed from its name (only ever stricter)."""
    if squashed in _URLISH_KEYS or squashed.endswith(_ENDPOINTISH_KEY_ENDS):
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
    _key_memo: dict[str, tuple[int, int, bool, int]] = field(init=False, repr=False, compare=False)
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

    def key_info(self, key: str) -> tuple[int, int, bool, int]:
        """(role code, effect bits, directory-like, KEY_* shape bits) for an argument key
        (memoised)."""
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
        shape = KEY_ARGVISH if squashed in _ARGVISH_KEYS else 0
        if key and (key[0] in "/~.$\\" or "/" in key or ":" in key or "%" in key):
            shape |= KEY_PATHISH
        hit = (role, bits, dirish, shape)
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
