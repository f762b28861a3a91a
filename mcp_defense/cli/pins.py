"""`mcp-defense pins show | approve | reset`: the pinned tool definitions of a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mcp_defense.cli.common import EXIT_OK, OutFmt, err_console, out_console, usage_error

pins_app = typer.Typer(
    help="Pinned tool definitions (a changed or added tool is denied by the built-in pack "
    "until approved).\n\nExit codes: 0 done, 1 (show) changes wait for approval, 2 usage "
    "error or unreadable pin file.",
    no_args_is_help=True,
)

PinFileOpt = Annotated[
    Path | None,
    typer.Option("--pins", help="The pin file (as given to stdio/http/sse --pins)."),
]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        help="Find the default pin file of this server: its command line as given after `--` "
        "to stdio (quoted as one string), or its URL for http/sse.",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(pins_app, name="pins")


def _store(pins: Path | None, server: str | None) -> Any:
    from mcp_defense.proxy.pins import PinStore, default_pin_file

    if (pins is None) == (server is None):
        raise usage_error("give the pin file with --pins FILE, or the server with --server")
    if pins is not None:
        return PinStore(pins, "")
    assert server is not None
    return PinStore(default_pin_file(server), server)


def _load(store: Any) -> dict[str, Any]:
    from mcp_defense.proxy.pins import PinError

    try:
        data = store.load()
    except PinError as e:
        raise usage_error(str(e)) from e
    if not data:
        raise usage_error(f"no pins yet at {store.path} (a server's first tool list pins it)")
    return dict(data)


@pins_app.command()
def show(
    pins: PinFileOpt = None,
    server: ServerOpt = None,
    fmt: Annotated[OutFmt, typer.Option("--format", "-f", help="text or json.")] = OutFmt.text,
) -> None:
    """List the pinned tools and the changes waiting for approval.

    Exit codes: 0 nothing waits, 1 changes wait for `pins approve`, 2 usage error or
    unreadable pin file.
    """
    store = _store(pins, server)
    data = _load(store)
    rows: list[dict[str, Any]] = []
    pending = data.get("pending", {})
    for name, entry in sorted(data.get("tools", {}).items()):
        state = "pinned"
        if name in pending:
            state = "removed (pending)" if pending[name].get("removed") else "changed (pending)"
        rows.append(_row(name, state, entry))
    for name, entry in sorted(pending.items()):
        if name not in data.get("tools", {}) and not entry.get("removed"):
            rows.append(_row(name, "added (pending)", entry))
    waiting = sum(1 for r in rows if r["state"] != "pinned")
    if fmt is OutFmt.json:
        out_console().print_json(
            json.dumps({"pins": str(store.path), "server": data.get("server", ""), "tools": rows})
        )
    else:
        table = Table(title=f"{store.path}  ({data.get('server', '')})", title_justify="left")
        for col in ("tool", "state", "sha256", "description"):
            table.add_column(col, overflow="fold")
        for r in rows:
            style = "" if r["state"] == "pinned" else "bold yellow"
            table.add_row(
                escape(r["tool"]),
                f"[{style}]{r['state']}[/]" if style else r["state"],
                r["sha256"][:12],
                escape(r["description"][:120]),
            )
        out_console().print(table)
        if waiting:
            out_console().print(
                f"{waiting} change(s) wait: review them, then `mcp-defense pins approve "
                f"--pins {store.path}`"
            )
    raise typer.Exit(1 if waiting else EXIT_OK)


def _row(name: str, state: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "tool": name,
        "state": state,
        "sha256": str(entry.get("sha256", "")),
        "description": str(entry.get("description", "")),
    }


@pins_app.command()
def approve(
    tools: Annotated[
        list[str] | None, typer.Argument(help="Tools to approve (default: every pending change).")
    ] = None,
    pins: PinFileOpt = None,
    server: ServerOpt = None,
) -> None:
    """Adopt the pending (changed, added, removed) tool definitions as the new pins.

    Exit codes: 0 approved (or nothing to approve), 2 usage error or unreadable pin file.
    """
    store = _store(pins, server)
    _load(store)
    done = store.approve(tools or None)
    missing = sorted(set(tools or ()) - set(done))
    if missing:
        err_console().print(f"[yellow]nothing pending for:[/] {escape(', '.join(missing))}")
    out_console().print(
        f"approved {len(done)} change(s)" + (f": {', '.join(done)}" if done else "")
    )


@pins_app.command()
def reset(pins: PinFileOpt = None, server: ServerOpt = None) -> None:
    """Forget the pins: the server's next tool list is pinned again as it is.

    Exit codes: 0 done, 2 usage error.
    """
    store = _store(pins, server)
    removed = store.reset()
    out_console().print(f"{'removed' if removed else 'no pin file at'} {store.path}")
