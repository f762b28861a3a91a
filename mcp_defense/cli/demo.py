"""`mcp-defense demo`: the built-in policies against a real server, proxy and kill."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo() -> None:
        """Run the demo for real: a real MCP server behind the proxy, a real kill.

        The built-in policies decide the published demo's calls made by the mcp SDK client
        against a real server behind `mcp-defense stdio --flow-source procfs`; a server that
        phones home on its own is killed; the flight recorder shows it all. Offline, Linux.

        Exit codes: 0 every scenario decided as expected, 1 otherwise.
        """
        from mcp_defense.demo import run_demo

        raise typer.Exit(run_demo())
