"""`mcp-defense demo`: the built-in policies against a real server, proxy and kill."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo() -> None:
        """Run the published demo for real: a real MCP server behind the stdio proxy with the
        procfs flow source, driven by the mcp SDK client, rendered by the flight recorder.

        Exit codes: 0 every scenario decided as expected, 1 otherwise.
        """
        from mcp_defense.demo import run_demo

        raise typer.Exit(run_demo())
