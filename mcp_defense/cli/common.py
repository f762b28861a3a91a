"""Options and helpers shared by every command group (one definition of --policy/--set)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console

from mcp_defense.policy.diagnostics import Diagnostic, format_github, format_json, format_text

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

PolicyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--policy",
        "-p",
        help="Policy file or directory (repeatable). Replaces the "
        'built-in pack; policies can `import "builtin:rules.mcpd"`.',
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Set a policy variable, e.g. --set workspace=/src (repeatable)."
    ),
]


class Fmt(StrEnum):
    text = "text"
    json = "json"
    github = "github"


class OutFmt(StrEnum):
    """For commands whose output has no GitHub annotation form: only what really works."""

    text = "text"
    json = "json"


def out_console() -> Console:
    """Console for stdout: full width, never wrapped, when stdout is a pipe or a file (CI logs
    must not cut rule names at 80 columns or wrap mid-clause)."""
    tty = sys.stdout.isatty()
    return Console(highlight=False, width=None if tty else 1000, soft_wrap=not tty)


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def usage_error(message: str) -> typer.Exit:
    from rich.markup import escape

    err_console().print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(EXIT_USAGE)


def parse_sets(sets: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in sets or ():
        if "=" not in item:
            raise usage_error(f"--set expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if not k.isidentifier():
            raise usage_error(f"--set: {k!r} is not a valid variable name")
        out[k] = v
    return out


def render_diagnostics(diags: Sequence[Diagnostic], fmt: str) -> str:
    if fmt == "json":
        return format_json(diags)
    if fmt == "github":
        return format_github(diags)
    return format_text(diags)


def print_diagnostics_rich(console: Console, diags: Sequence[Diagnostic]) -> None:
    """Coloured on a terminal; identical text to `format_text` otherwise."""
    if not console.is_terminal:
        text = format_text(diags)
        if text:
            console.out(text, highlight=False)
        return
    for d in diags:
        colour = "red" if d.is_error else "yellow"
        console.print(
            f"[bold]{d.span}[/]: [{colour}]{d.severity}[/]: {d.message} [dim]\\[{d.code}][/]"
        )
        if d.source_line:
            console.out("    " + d.source_line.rstrip().expandtabs(1), highlight=False)
            console.print("    " + " " * max(d.span.column - 1, 0) + f"[{colour}]^[/]")


def load_or_exit(policy: Sequence[str] | None, sets: Sequence[str] | None) -> Any:
    """Compile the policy set or print its diagnostics on stderr and exit 2."""
    from mcp_defense.policy.loader import load

    result = load(policy or None, parse_sets(sets))
    if result.table is None:
        console = err_console()
        print_diagnostics_rich(console, result.errors)
        # Every error is printed above with its file:line:col; lint would add only warnings.
        console.print(
            f"[bold red]policy has {len(result.errors)} error(s)[/] (above); fix them and run "
            "again (`mcp-defense policy lint` also lists warnings)"
        )
        raise typer.Exit(EXIT_USAGE)
    return result.table


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
