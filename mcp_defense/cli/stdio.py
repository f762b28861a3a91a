"""`mcp-defense stdio … -- SERVER COMMAND`: run an MCP server behind the policy proxy.

The flags are the published tool's, because users' MCP configs already contain them. Flags
for features a later release implements fail loudly (exit 2) instead of being ignored: a
user who asked for flow correlation or a SIEM sink must not believe they have it.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from mcp_defense.cli import sinks
from mcp_defense.cli.common import PolicyOpt, SetOpt, usage_error
from mcp_defense.cli.proxy_options import (
    DEFAULT_APPROVAL_TIMEOUT,
    DEFAULT_MAX_MESSAGE,
    AgentIdOpt,
    ApprovalTimeoutOpt,
    ArchetypeOpt,
    ArchetypesOpt,
    MaxMessageOpt,
    NoReloadOpt,
    ObserveOpt,
    PinsOpt,
    RecordOpt,
    hot_reload,
    load_policy,
    open_pins,
)
from mcp_defense.policy.table import LearningState
from mcp_defense.proxy.approval import Approver
from mcp_defense.proxy.environment import credentials_passed, server_environment
from mcp_defense.proxy.flows import FlowMonitor, parse_window
from mcp_defense.proxy.stdio import StdioProxy
from mcp_defense.resources import state_dir


def stdio(
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The MCP server command, after `--`.", show_default=False),
    ] = None,
    archetype: ArchetypeOpt = "",
    agent_id: AgentIdOpt = "unknown",
    policy: PolicyOpt = None,
    sets: SetOpt = None,
    observe: ObserveOpt = False,
    approval: Annotated[
        bool,
        typer.Option(
            "--approval",
            help="Ask the person about require_approval decisions: in the client (MCP "
            "elicitation) when it declared that capability, else on /dev/tty; without "
            "--approval they are denied.",
        ),
    ] = False,
    approval_timeout: ApprovalTimeoutOpt = DEFAULT_APPROVAL_TIMEOUT,
    record: RecordOpt = None,
    max_message_bytes: MaxMessageOpt = DEFAULT_MAX_MESSAGE,
    no_reload: NoReloadOpt = False,
    archetypes: ArchetypesOpt = None,
    pins: PinsOpt = None,
    pass_env: Annotated[
        list[str] | None,
        typer.Option(
            "--pass-env",
            help="Pass this variable (or glob, e.g. 'GITHUB_*') to the server, even when its "
            "name says it is a credential (repeatable). The archetype's `env` clause says what "
            "the server inherits; by default every variable but credentials (cloud, git "
            "hosting, registries, *_TOKEN, *_SECRET, *_KEY, *_PASSWORD, …).",
        ),
    ] = None,
    flow_source: Annotated[
        list[str] | None,
        typer.Option(
            "--flow-source",
            help="Where network flows come from (repeatable): procfs[:INTERVAL] (the server's "
            "own sockets, from /proc, no privileges; every 20ms by default), PATH or "
            "jsonl:PATH (FlowEvent JSON lines, file or FIFO), tetragon:PATH (Tetragon JSON "
            "export). Flows are joined to the calls that caused them and decided by flow and "
            "orphan rules; a kill verdict kills the server (exit 1).",
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="How long after a call's answer its flows are still joined to it (5s, "
            "500ms); default: the policy's correlate block. Needs --flow-source.",
        ),
    ] = None,
    sandbox: Annotated[
        str | None,
        typer.Option(
            "--sandbox",
            metavar="[=require]",
            help="Apply the archetype to the server process in the kernel (Linux Landlock: "
            "files, TCP ports, exec), and say which parts this kernel enforces. "
            "--sandbox=require refuses to start (exit 2) without full enforcement.",
        ),
    ] = None,
    record_required: sinks.RecordRequiredOpt = False,
    audit_log: sinks.AuditLogOpt = None,
    siem_splunk: sinks.SplunkOpt = None,
    siem_webhook: sinks.WebhookOpt = None,
    webhook_secret_file: sinks.WebhookSecretOpt = None,
    otlp: sinks.OtlpOpt = None,
    sink_ca_file: sinks.SinkCaOpt = None,
    sink_timeout: sinks.SinkTimeoutOpt = 10.0,
    sink_retry_max: sinks.SinkRetryOpt = 60.0,
    spool_dir: sinks.SpoolDirOpt = None,
    spool_max_size: sinks.SpoolMaxOpt = "64M",
) -> None:
    """Run an MCP server behind the policy proxy (put the server command after `--`).

    Denied tool calls never reach the server: the client gets JSON-RPC error -32010 with decision, rule, reason and correlation id in error.data.

    Exit code: the server's; 1 if policy killed it; 2 on a usage or policy error; 127 if the server cannot be started.
    """
    # The parameters, for the recorder. Taken first: a locals() snapshot taken once the table
    # exists would keep the first table alive after every reload.
    options = dict(locals())
    if not command:
        raise usage_error(
            "no server command: put it after `--`, e.g. "
            "`mcp-defense stdio --archetype filesystem -- npx -y "
            "@modelcontextprotocol/server-filesystem /workspace`"
        )
    table, paths, set_list = load_policy(policy, archetypes, sets, archetype)
    server_env, withheld = server_environment(
        os.environ, table.archetype(archetype).env, pass_env or ()
    )
    if withheld:
        print(f"mcp-defense: {_withheld_line(withheld, archetype)}", file=sys.stderr)
    launch = None
    if sandbox is not None:
        launch = _sandbox(table, archetype, command, sandbox, server_env)
    if window is not None and not flow_source:
        raise usage_error("--window needs --flow-source (it is the flow correlation window)")
    recorder = sinks.recorder_from_options(options)
    ref, reloader = hot_reload(table, paths, set_list, archetype, recorder, no_reload)
    flows = None
    if flow_source:
        if not _has_flow_rules(table, archetype):
            print(
                f"mcp-defense: warning: --flow-source given, but the policy has no flow or "
                f"orphan rule for archetype {archetype!r}: flows are recorded, never blocked",
                file=sys.stderr,
            )
        try:
            flows = FlowMonitor(
                flow_source,
                join=table.join,
                window_s=parse_window(window) if window is not None else None,
                archetype=archetype,
                agent_id=agent_id,
                observe=observe,
                # Flow rules are decided by the proxy's table, also after a hot reload.
                get_table=lambda: proxy.get_table(),
                emit=recorder.emit,
            )
        except ValueError as e:
            recorder.close()
            raise usage_error(f"--flow-source/--window: {e}") from e
    proxy = StdioProxy(
        command,
        archetype=archetype,
        agent_id=agent_id,
        get_table=ref.get,
        observe=observe,
        approver=Approver(approval_timeout) if approval else None,
        recorder=recorder,
        max_message_bytes=max_message_bytes,
        learning=LearningState(state_dir() / "learning.json"),
        flows=flows,
        launcher=launch.launcher if launch else (),
        sandbox=launch.summary if launch else None,
        pins=open_pins(pins, " ".join(command)),
        env=server_env,
        env_withheld=withheld,
        env_credentials=credentials_passed(server_env),
    )
    del table  # the ref holds the table in force: this name would keep the first one alive
    restore_hup = reloader.install_sighup()
    reloader.start()
    try:
        code = proxy.run()
    finally:
        reloader.stop()
        restore_hup()
        recorder.close()
    sys.stderr.flush()
    raise typer.Exit(code)


def _has_flow_rules(table: Any, archetype: str) -> bool:
    rules = table.rules_for(archetype)
    return rules is not None and bool(rules.flow or rules.orphan)


def _withheld_line(withheld: list[str], archetype: str) -> str:
    """The one stderr line that says which variables the server did not get, and how to
    pass one (names only: the values are credentials)."""
    shown = ", ".join(withheld[:8]) + (
        f" and {len(withheld) - 8} more" if len(withheld) > 8 else ""
    )
    return (
        f"withheld {len(withheld)} environment variable(s) from the server ({shown}); "
        f"pass one it needs with --pass-env NAME or the `env` clause of archetype {archetype!r}"
    )


def _sandbox(table: Any, archetype: str, command: list[str], mode: str, env: dict[str, str]) -> Any:
    """--sandbox: the Landlock launch for this server (run with `env`), said out loud on
    stderr."""
    from mcp_defense.sandbox.plan import MODES, prepare

    if mode not in MODES:
        raise usage_error(f"--sandbox={mode}: expected --sandbox or --sandbox=require")
    try:
        launch = prepare(table, archetype, command, mode, env=env)
    except ValueError as e:
        raise usage_error(f"--sandbox: {e}") from e
    for line in launch.lines:
        print(f"mcp-defense: {line}", file=sys.stderr)
    if mode == "require" and not launch.full:
        raise usage_error("--sandbox=require: this kernel cannot enforce all of the archetype")
    return launch


class _StdioCommand(TyperCommand):
    """Lets `--sandbox` stand alone (`--sandbox=require` gives the mode): click options
    cannot take an optional value, so a bare flag before `--` is read as `--sandbox=on`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        head = args.index("--") if "--" in args else len(args)
        args = [("--sandbox=on" if a == "--sandbox" else a) for a in args[:head]] + args[head:]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    app.command(
        "stdio",
        cls=_StdioCommand,
        context_settings={"help_option_names": ["-h", "--help"]},
    )(stdio)


def main() -> None:
    """`python -m mcp_defense.cli.stdio …`: the command alone, without the other groups."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)  # a single-command app: `python -m mcp_defense.cli.stdio --archetype … -- …`
    app(prog_name="mcp-defense stdio")


if __name__ == "__main__":
    main()
