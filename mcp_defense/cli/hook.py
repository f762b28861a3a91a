"""`mcp-defense hook claude-code`: the typer face of the hook (for `--help` and for callers of
the typer app). The `mcp-defense` script sends `hook …` straight to `hooks/client.py`
without importing typer; both run `fast_main`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mcp_defense.hooks.client import fast_main


def register(app: typer.Typer) -> None:
    hook_app = typer.Typer(
        help="Agent hooks: put an agent's own tools (Bash, Read, Write, …) under the policy.\n\n"
        "Exit codes: 0 decided (the decision is on stdout), 2 blocked: malformed input, unknown "
        "tool or any internal error (the reason is on stderr).",
        no_args_is_help=True,
    )

    @hook_app.command(
        "claude-code",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    def claude_code(
        policy: Annotated[
            list[str] | None,
            typer.Option("--policy", "-p", help="Policy file or directory (repeatable)."),
        ] = None,
        sets: Annotated[
            list[str] | None,
            typer.Option(
                "--set", "-s", help="Policy variable NAME=VALUE; workspace defaults to the cwd."
            ),
        ] = None,
        server_archetype: Annotated[
            list[str] | None,
            typer.Option(
                "--server-archetype",
                help="SERVER=ARCH: archetype of the MCP server behind mcp__SERVER__* tools "
                "(default: the server's name, when it is an archetype).",
            ),
        ] = None,
        tool_archetype: Annotated[
            list[str] | None,
            typer.Option("--tool-archetype", help="TOOL=ARCH: decide a tool under ARCH."),
        ] = None,
        record: Annotated[
            str | None, typer.Option("--record", help="Append decisions as JSON lines to FILE.")
        ] = None,
        agent_id: Annotated[str, typer.Option("--agent-id", help="Recorded agent.id.")] = (
            "claude-code"
        ),
        in_process: Annotated[
            bool,
            typer.Option(
                "--in-process", help="Decide in this process (slow start; no resident process)."
            ),
        ] = False,
        idle_timeout: Annotated[
            float,
            typer.Option("--idle-timeout", help="Seconds the resident decision process stays."),
        ] = 900.0,
    ) -> None:
        """Decide one Claude Code PreToolUse input (stdin) and answer on stdout.

        Exit code: 0 with a JSON decision (allow / deny / ask), or 2 (blocked, reason on
        stderr) for malformed input, an unknown tool or any internal error.
        """
        argv = ["claude-code"]
        for flag, values in (
            ("--policy", policy),
            ("--set", sets),
            ("--server-archetype", server_archetype),
            ("--tool-archetype", tool_archetype),
        ):
            for v in values or ():
                argv += [flag, v]
        if record:
            argv += ["--record", record]
        argv += ["--agent-id", agent_id, "--idle-timeout", str(idle_timeout)]
        if in_process:
            argv.append("--in-process")
        raise typer.Exit(fast_main(argv))

    app.add_typer(hook_app, name="hook")
