"""mcp-defense: runtime defense for AI coding agents, decided by compiled policy tables.

>>> import mcp_defense
>>> table = mcp_defense.compile(None, {"workspace": "/workspace"})   # built-in pack
>>> table.decide(mcp_defense.ToolCall("filesystem", "read_file", {"path": "~/.ssh/id_rsa"}))

Importing the package is nearly free (the names below load on first use): the Claude Code
hook imports it on every tool use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the hook ~7 ms
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from mcp_defense.policy.facts import Action, Decision, ToolCall
    from mcp_defense.policy.table import DecisionTable

__version__ = "0.2.0"
__all__ = ["Action", "Decision", "ToolCall", "compile", "__version__"]


def __getattr__(name: str) -> object:
    if name in ("Action", "Decision", "ToolCall"):
        from mcp_defense.policy import facts

        return getattr(facts, name)
    raise AttributeError(f"module 'mcp_defense' has no attribute {name!r}")


def compile(  # noqa: A001 - the documented public name
    paths: Sequence[str | Path] | None = None,
    variables: Mapping[str, str] | None = None,
) -> DecisionTable:
    """Compile policy files (None = the built-in pack) into an immutable DecisionTable.

    Raises `mcp_defense.policy.diagnostics.PolicyError` carrying every diagnostic.
    """
    from mcp_defense.policy.loader import load_table

    return load_table(paths, variables)
