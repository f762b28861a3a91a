"""The environment a call is read in, and per-environment expansion tables and memo caches."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp_defense.policy.extract.limits import _CACHE_LIMIT
from mcp_defense.policy.extract.paths import _lexical

if TYPE_CHECKING:
    from mcp_defense.policy.extract.urls import _UrlOut


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
