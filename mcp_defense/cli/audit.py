"""`mcp-defense audit verify FILE`: check the hash chain of an `--audit-log`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from mcp_defense.cli.common import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, err_console

audit_app = typer.Typer(
    help="Check audit logs written with --audit-log.\n\n"
    "Exit codes: 0 intact, 1 tampered (the first bad line is named), 2 unreadable.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.command()
def verify(
    path: Annotated[Path, typer.Argument(help="An audit log (--audit-log FILE).")],
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            help="The chain head a sink received (`audit_head` event): HASH or LINES:HASH. "
            "Also catches a log cut short or whose last line was edited.",
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Verify an audit log's hash chain: "intact" and the line count (exit 0), or the first
    edited, deleted, inserted, reordered or truncated line (exit 1).

    Exit codes: 0 intact, 1 tampered, 2 unreadable file or usage error.
    """
    from mcp_defense.events.audit import verify as verify_chain

    if fmt not in ("text", "json"):
        err_console().print(f"[bold red]error:[/] --format must be text or json, not {fmt!r}")
        raise typer.Exit(EXIT_USAGE)
    want_lines: int | None = None
    want_head: str | None = None
    if head:
        count, sep, digest = head.rpartition(":")
        want_head = digest
        if sep:
            if not count.isdigit():
                err_console().print("[bold red]error:[/] --head expects HASH or LINES:HASH")
                raise typer.Exit(EXIT_USAGE)
            want_lines = int(count)
    try:
        verdict = verify_chain(path, head=want_head, lines=want_lines)
    except OSError as e:
        err_console().print(f"[bold red]error:[/] {escape(str(path))}: {e.strerror or e}")
        raise typer.Exit(EXIT_USAGE) from e
    if fmt == "json":
        sys.stdout.write(json.dumps({"file": str(path), **verdict.to_dict()}) + "\n")
    else:
        console = Console(highlight=False, soft_wrap=True)
        if verdict.intact:
            console.print(
                f"[bold green]intact[/]: {escape(str(path))}: {verdict.lines} line(s), "
                f"head {verdict.head}"
            )
        else:
            console.print(
                f"[bold red]TAMPERED[/]: {escape(str(path))}:{verdict.bad_line}: "
                f"{escape(verdict.message)}"
            )
    raise typer.Exit(EXIT_OK if verdict.intact else EXIT_FINDINGS)
