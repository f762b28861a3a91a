"""The `mcp-defense` script: `hook` goes straight to its fast path, everything else to typer.

A PreToolUse hook runs once per tool use and must not import typer, rich or the engine; and
whatever breaks on that path (even an ImportError) must exit 2, the one failure code that
blocks the tool use in Claude Code.
"""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["hook"] and not {"-h", "--help"} & set(argv) and len(argv) > 1:
        try:
            from mcp_defense.hooks.client import fast_main

            code = fast_main(argv[1:])
        except BaseException as e:  # noqa: BLE001 - fail closed, whatever happened
            sys.stderr.write(f"mcp-defense: hook failed, tool use blocked: {e!r}\n")
            code = 2
        sys.exit(code)
    from mcp_defense.cli.main import app

    app()
