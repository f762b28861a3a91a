"""Options every proxy command shares (`stdio`, `http`, `sse`): one definition each, so the
three commands spell, default and document them the same way."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from mcp_defense.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_BYTES
from mcp_defense.proxy.approval import DEFAULT_TIMEOUT_S

ArchetypeOpt = Annotated[
    str,
    typer.Option(
        "--archetype",
        "-a",
        help="What the server is (filesystem, github, database, "
        "web-fetch, shell, code-execution, generic, or one your policy defines).",
    ),
]
AgentIdOpt = Annotated[
    str, typer.Option("--agent-id", help="Who is calling (recorded, `agent.id`).")
]
ObserveOpt = Annotated[
    bool, typer.Option("--observe", help="Decide and record everything, block nothing.")
]
ApprovalTimeoutOpt = Annotated[
    float,
    typer.Option("--approval-timeout", help="Seconds before an unanswered prompt denies."),
]
RecordOpt = Annotated[
    str | None, typer.Option("--record", help="Append events as JSON lines to FILE.")
]
MaxMessageOpt = Annotated[
    int,
    typer.Option(
        "--max-message-bytes",
        min=1024,
        help="Refuse (with an error) any single message larger than this, in either direction.",
    ),
]
NoReloadOpt = Annotated[
    bool,
    typer.Option(
        "--no-reload",
        help="Do not watch the policy files for changes (SIGHUP still reloads).",
    ),
]
ArchetypesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--archetypes",
        help="Extra policy file with archetype definitions "
        "(published tool's flag; same as an extra --policy).",
    ),
]
PinsOpt = Annotated[
    str | None,
    typer.Option(
        "--pins",
        help="Pin file of this server's tool definitions (default: one per server command or "
        "URL under the state directory; commit it to share). A changed or added tool is "
        "`call.tool_status` 'changed'/'new' (the built-in pack denies it) until `mcp-defense "
        "pins approve`. `--pins off` disables pinning.",
    ),
]
DEFAULT_APPROVAL_TIMEOUT = DEFAULT_TIMEOUT_S
DEFAULT_MAX_MESSAGE = DEFAULT_MAX_MESSAGE_BYTES


def load_policy(
    policy: list[str] | None, archetypes: list[str] | None, sets: list[str] | None, archetype: str
) -> tuple[Any, list[str] | None, list[str]]:
    """(table, policy paths, --set list) for a proxy, or a usage error (exit 2). `workspace`
    defaults to the current directory; `--archetypes` adds to the built-in pack."""
    from mcp_defense.cli.common import load_or_exit, usage_error

    if not archetype:
        raise usage_error("--archetype is required (e.g. filesystem, github, shell, generic)")
    set_list = list(sets or [])
    if not any(s.split("=", 1)[0] == "workspace" for s in set_list):
        set_list.append(f"workspace={os.getcwd()}")
    paths = list(policy or []) + list(archetypes or [])
    if archetypes and not policy:
        # --archetypes adds to the built-in pack; it does not replace it as --policy does.
        paths.insert(0, "builtin:")
    table = load_or_exit(paths or None, set_list)
    if archetype not in table.archetypes:
        known = ", ".join(sorted(table.archetypes))
        raise usage_error(f"unknown archetype {archetype!r}; the policy defines: {known}")
    return table, paths or None, set_list


def open_pins(pins: str | None, server: str) -> Any:
    """The PinStore for a server (None with `--pins off`)."""
    from pathlib import Path

    from mcp_defense.proxy.pins import PinStore, default_pin_file

    if pins == "off":
        return None
    return PinStore(Path(pins) if pins else default_pin_file(server), server)


def hot_reload(
    table: Any,
    paths: list[str] | None,
    set_list: list[str],
    archetype: str,
    recorder: Any,
    no_reload: bool,
) -> tuple[Any, Any]:
    """(TableRef, PolicyReloader): the table in force lives in the ref; a save (or SIGHUP)
    compiles in the background and swaps it; a broken policy keeps the last good one."""
    from mcp_defense.cli.common import parse_sets
    from mcp_defense.policy.reload import PolicyReloader, TableRef

    ref = TableRef(table)
    reloader = PolicyReloader(
        paths,
        parse_sets(set_list),
        ref=ref,
        emit=recorder.emit,
        archetypes=[archetype],
        watch=not no_reload,
    )
    return ref, reloader
