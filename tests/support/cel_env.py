"""What the CEL tests evaluate expressions with: deterministic stand-ins for the schema's
functions (called by the lowered closures, cel-cpp and cel-python alike), the archetype
constant, the context the decision table hands to closures, and outcome comparison."""

from __future__ import annotations

import fnmatch
import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any

from mcp_defense.policy import cel, schema
from mcp_defense.policy.facts import CallFacts, FlowFacts

# ---------------------------------------------------------------------------------------------
# Deterministic function stubs, called by every evaluator


def _jewel(p: str) -> str:
    if ".ssh/id_" in p or p.endswith("/.aws/credentials") or p.startswith("/proc/"):
        return "crown"
    if p.endswith(".env") or p.endswith("/.gitconfig"):
        return "auth"
    if "/.github/workflows/" in p or p.endswith("CLAUDE.md"):
        return "config"
    return ""


def _jewel_set(p: str) -> str:
    return "developer_credentials" if _jewel(p) else ""


def _glob(p: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(p, pattern)


def _basename(p: str) -> Any:
    b = p.rstrip("/").rsplit("/", 1)[-1]
    return b if b else None  # a wrong result type on purpose: both sides must reject it


def _ip(h: str) -> Any:
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        return None


def _is_ip(h: str) -> bool:
    return _ip(h) is not None


def _is_loopback(h: str) -> bool:
    ip = _ip(h)
    return h == "localhost" or (ip is not None and ip.is_loopback)


def _is_link_local(h: str) -> bool:
    ip = _ip(h)
    return ip is not None and ip.is_link_local


def _is_private(h: str) -> bool:
    ip = _ip(h)
    return ip is not None and ip.is_private and not ip.is_loopback and not ip.is_link_local


def _is_metadata(h: str) -> bool:
    return h in ("169.254.169.254", "metadata.google.internal", "100.100.100.200")


@dataclass(frozen=True)
class Arch:
    """Stands in for the compiler's archetype constant: the fields CEL reads, plus what the
    receiver-function stubs need."""

    name: str = "filesystem"
    network: str = "none"
    spawn: bool = False
    learning: bool = False
    root: str = "/w/"
    hosts: tuple[str, ...] = ("api.github.com",)
    programs: tuple[str, ...] = ("git", "ls")


FUNCTIONS: dict[str, Any] = {
    "jewel": _jewel,
    "jewel_set": _jewel_set,
    "glob": _glob,
    "basename": _basename,
    "is_ip": _is_ip,
    "is_loopback": _is_loopback,
    "is_link_local": _is_link_local,
    "is_private": _is_private,
    "is_metadata": _is_metadata,
    "allows_path": lambda a, p: p.startswith(a.root),
    "allows_write": lambda a, p: p.startswith(a.root) and not p.endswith(".lock"),
    "allows_host": lambda a, h: a.network == "any" or h in a.hosts,
    "allows_endpoint": lambda a, e: a.network == "any" or e.rsplit(":", 1)[0] in a.hosts,
    "allows_program": lambda a, p: p in a.programs,
    "allows_flow": lambda a, f: a.network == "any" or f.host in a.hosts,
}


def _pack_lets() -> dict[str, str]:
    """The `let` variables of the shipped pack, which its rules read as `vars.NAME`."""
    from mcp_defense.policy.parser import parse as parse_policy
    from mcp_defense.resources import builtin_policy_dir

    out: dict[str, str] = {}
    for f in sorted(builtin_policy_dir().glob("*.mcpd")):
        for let in parse_policy(f.read_text(), str(f)).lets:
            out[let.name] = let.value.value
    return out


VARS = {"workspace": "/w", "home": "/home/u", **_pack_lets()}


def make_env(scope: frozenset[str] | None = None) -> cel.CelEnv:
    return cel.CelEnv(
        scope if scope is not None else frozenset(schema.VARIABLES), tuple(VARS), FUNCTIONS
    )


class Ident:
    __slots__ = ("id",)

    def __init__(self, ident: str) -> None:
        self.id = ident


@dataclass
class Ctx:
    """The shape the compiled table hands to closures (`EvalCtx`)."""

    call: CallFacts | None
    flow: FlowFacts | None
    archetype: Any = field(default_factory=Arch)
    vars: dict[str, str] = field(default_factory=lambda: dict(VARS))
    agent: Ident = field(default_factory=lambda: Ident("agent-1"))
    session: Ident = field(default_factory=lambda: Ident("s-1"))
    witness: dict[str, Any] = field(default_factory=dict)

    def activation(self) -> dict[str, Any]:
        return {
            "call": self.call,
            "flow": self.flow,
            "archetype": self.archetype,
            "agent": self.agent,
            "session": self.session,
            "vars": self.vars,
        }

    def constants(self) -> dict[str, Any]:
        return {"archetype": self.archetype, "vars": self.vars}


def norm(v: Any) -> Any:
    """A comparable, type-tagged form: `True` and `1` differ, tuples equal lists."""
    if v is None:
        return None
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int):
        return ("int", int(v))
    if isinstance(v, float):
        return ("double", "nan" if math.isnan(v) else v)
    if isinstance(v, str):
        return ("string", str(v))
    if isinstance(v, (list, tuple)):
        return ("list", [norm(x) for x in v])
    if isinstance(v, dict):
        return ("map", {k: norm(x) for k, x in v.items()})
    return ("object", id(v))


def outcome(fn: Any, *args: Any) -> Any:
    """("ok", value) or ("error",); anything but CelEvalError escapes and fails the test."""
    try:
        return ("ok", norm(fn(*args)))
    except cel.CelEvalError:
        return ("error",)


def lowered_outcome(source: str, env: cel.CelEnv, ctx: Ctx, fold: bool) -> Any:
    try:
        low = cel.lower(cel.parse(source), env, ctx.constants() if fold else {})
    except cel.CelEvalError:  # folded to an error: it fails on every call
        return ("error",)
    return outcome(low.fn, ctx)
