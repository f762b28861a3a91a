"""The `mcp-defense` command: one typer app, one sub-app or command module per group.

Exit codes (all commands): 0 success / allowed, 1 findings (lint errors, test failures,
changed decisions), 2 usage error or unreadable input. Runtimes (stdio) exit with the
server's code, 1 when the server was killed by policy, 127 when it could not be started.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mcp-defense",
    help=(
        "Runtime defense for AI coding agents: decides every MCP tool call against "
        "policy-as-code.\n\nExit codes: 0 ok, 1 findings (lint errors, failed tests, changed "
        "decisions) or server killed by policy, 2 usage error or unreadable input; `stdio` "
        "otherwise exits with the server's code (127: it could not start)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if not value:
        return
    from mcp_defense import __version__
    from mcp_defense.policy.loader import load

    result = load()  # the built-in pack with its default variables, as `stdio` runs it
    pack = result.table.version if result.table is not None else "does not compile"
    typer.echo(f"mcp-defense {__version__} (built-in policy pack {pack})")
    raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_version,
        help="Print the version and the built-in policy pack's version, then exit.",
    ),
) -> None:
    """Runtime defense for AI coding agents: decides every MCP tool call against policy-as-code."""


def _register() -> None:
    # Each command module adds itself; the order here is the order in --help.
    from mcp_defense.cli import audit, demo, hook, http, pins, policy, record, stdio, wrap

    for module in (policy, stdio, http, pins, hook, wrap, record, audit, demo):
        module.register(app)


_register()

if __name__ == "__main__":
    app()
