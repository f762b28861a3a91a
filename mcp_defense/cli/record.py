"""`mcp-defense record view FILE`: a recording rendered as the flight recorder showed it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mcp_defense.cli.common import EXIT_OK, EXIT_USAGE, OutFmt, err_console
from mcp_defense.events.model import EventFormatError
from mcp_defense.events.recorder import Summary, grouped, header, read_recording, render

record_app = typer.Typer(
    help="Read recordings written with --record.\n\n"
    "Exit codes: 0 ok, 2 unreadable or invalid recording.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(record_app, name="record")


@record_app.command()
def view(
    path: Annotated[Path, typer.Argument(help="A JSONL recording (--record FILE).")],
    fmt: Annotated[
        OutFmt, typer.Option("--format", "-f", help="text (timeline) or json (summary counts).")
    ] = OutFmt.text,
) -> None:
    """Render a recording as a timeline: calls, the flows they caused, orphans, kills.

    Exit codes: 0 rendered, 2 the file is unreadable or a line is not a valid event (with
    its line number).
    """
    if not path.is_file():
        err_console().print(f"[bold red]error:[/] {path}: no such file")
        raise typer.Exit(EXIT_USAGE)
    events = []
    bad: list[str] = []
    for n, item in read_recording(path):
        if isinstance(item, EventFormatError):
            bad.append(f"{path}:{n}: {item}")
        else:
            events.append(item)
    summary = Summary()
    for e in events:
        summary.add(e)
    if fmt is OutFmt.json:
        sys.stdout.write(
            json.dumps(
                {
                    "events": len(events),
                    "decisions": dict(summary.decisions),
                    "flows": summary.flows,
                    "orphans": summary.orphans,
                    "kills": summary.kills,
                    "errors": bad,
                },
                indent=2,
            )
            + "\n"
        )
    else:
        console = Console(highlight=False, soft_wrap=True)
        console.print(header())
        for e in grouped(events):
            for line in render(e):
                console.print(line)
        console.print(summary.text())
    if bad:
        ec = err_console()
        for b in bad:
            ec.print(f"[bold red]error:[/] {b}")
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_OK)
