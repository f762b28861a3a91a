"""`mcp-defense http` and `mcp-defense sse`: remote MCP servers behind the policy proxy.

`http` fronts a Streamable HTTP server (both protocol eras), `sse` a legacy HTTP+SSE server
(the published tool's command). Both serve on loopback by default, at the upstream URL's
path, with every policy, recording and sink flag of `stdio`; decisions are made by the same
`ProxySession` (proxy/session.py) as stdio's.
"""

import ssl
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

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

EXIT_DOC = (
    "Exit code: 0 when stopped (Ctrl-C or SIGTERM); 2 on a usage or policy error, or when "
    "the address cannot be bound."
)


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--bind {bind!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def _command(transport: str) -> Any:
    def command(
        upstream: Annotated[
            str,
            typer.Option(
                "--upstream",
                "-u",
                help="The MCP server's URL"
                + (
                    " (Streamable HTTP endpoint, e.g. https://mcp.example.com/mcp)."
                    if transport == "http"
                    else " (its SSE stream, e.g. http://127.0.0.1:9001/sse; a bare origin means /sse)."
                ),
            ),
        ] = "",
        bind: Annotated[
            str,
            typer.Option(
                "--bind",
                "-b",
                help="HOST:PORT the proxy listens on (loopback by default; any other address "
                "needs --token-file).",
            ),
        ] = "127.0.0.1:8080",
        archetype: ArchetypeOpt = "",
        agent_id: AgentIdOpt = "unknown",
        policy: PolicyOpt = None,
        sets: SetOpt = None,
        observe: ObserveOpt = False,
        approval: Annotated[
            bool,
            typer.Option(
                "--approval",
                help="Let a person answer require_approval decisions on the proxy's approval "
                "page (/_mcp-defense/approvals, its URL is printed); without it they are denied.",
            ),
        ] = False,
        approval_timeout: ApprovalTimeoutOpt = DEFAULT_APPROVAL_TIMEOUT,
        record: RecordOpt = None,
        max_message_bytes: MaxMessageOpt = DEFAULT_MAX_MESSAGE,
        no_reload: NoReloadOpt = False,
        archetypes: ArchetypesOpt = None,
        pins: PinsOpt = None,
        token_file: Annotated[
            Path | None,
            typer.Option(
                "--token-file",
                help="Require this token (file contents) from clients, in header "
                "X-MCP-Defense-Token (compared in constant time).",
            ),
        ] = None,
        allow_origin: Annotated[
            list[str] | None,
            typer.Option(
                "--allow-origin",
                help="Also accept requests with this Origin (repeatable; the proxy's own "
                "loopback origins are always accepted).",
            ),
        ] = None,
        allow_host: Annotated[
            list[str] | None,
            typer.Option(
                "--allow-host", help="Also accept this Host header, HOST:PORT (repeatable)."
            ),
        ] = None,
        upstream_ca: Annotated[
            Path | None,
            typer.Option(
                "--upstream-ca", help="CA bundle for the upstream's TLS (verified by default)."
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
        # The parameters, for the recorder. Taken first: a locals() snapshot taken once the
        # table exists would keep the first table alive after every reload.
        params = dict(locals())
        if not upstream:
            raise usage_error(f"--upstream is required (the MCP server's URL){_example(transport)}")
        try:
            host, port = parse_bind(bind)
        except ValueError as e:
            raise usage_error(str(e)) from e
        from mcp_defense.proxy.web import is_loopback, upstream_parts

        try:
            upstream_parts(upstream)
        except ValueError as e:
            raise usage_error(f"--upstream: {e}") from e
        token = _read_token(token_file)
        if not is_loopback(host) and token is None:
            raise usage_error(
                f"--bind {bind}: a non-loopback address needs --token-file "
                "(anyone who can reach it could use your MCP server)"
            )
        table, paths, set_list = load_policy(policy, archetypes, sets, archetype)
        verify: Any = True
        if upstream_ca is not None:
            try:
                verify = ssl.create_default_context(cafile=str(upstream_ca))
            except (OSError, ssl.SSLError) as e:
                raise usage_error(f"--upstream-ca {upstream_ca}: {e}") from e
        recorder = sinks.recorder_from_options(params)
        from mcp_defense.policy.table import LearningState
        from mcp_defense.proxy.serve import HttpProxyOptions, serve
        from mcp_defense.resources import state_dir

        ref, reloader = hot_reload(table, paths, set_list, archetype, recorder, no_reload)
        options = HttpProxyOptions(
            transport=transport,
            upstream=upstream,
            host=host,
            port=port,
            archetype=archetype,
            agent_id=agent_id,
            get_table=ref.get,
            observe=observe,
            approval=approval,
            approval_timeout=approval_timeout,
            recorder=recorder,
            max_message_bytes=max_message_bytes,
            learning=LearningState(state_dir() / "learning.json"),
            token=token,
            allowed_origins=tuple(allow_origin or ()),
            allowed_hosts=tuple(allow_host or ()),
            verify=verify,
            pins=open_pins(pins, upstream),
        )
        del table  # the ref holds the table in force: this name would keep the first one alive
        restore_hup = reloader.install_sighup()
        reloader.start()
        try:
            import uvloop

            code = uvloop.run(serve(options))
        except OSError as e:
            raise usage_error(f"--bind {bind}: {e.strerror or e}") from e
        finally:
            reloader.stop()
            restore_hup()
            recorder.close()
        sys.stderr.flush()
        raise typer.Exit(code)

    what = "Streamable HTTP" if transport == "http" else "legacy HTTP+SSE"
    command.__doc__ = (
        f"Run a {what} MCP server behind the policy proxy (clients connect to --bind).\n\n"
        "Denied tool calls never reach the server: the client gets JSON-RPC error -32010 "
        "with decision, rule, reason and correlation id in error.data"
        + (
            " (for sse: on its event stream, as the SDK clients expect).\n\n"
            if transport == "sse"
            else ".\n\n"
        )
        + EXIT_DOC
    )
    return command


def _example(transport: str) -> str:
    if transport == "http":
        return ", e.g. --upstream https://mcp.example.com/mcp"
    return ", e.g. --upstream http://127.0.0.1:9001/sse"


def _read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise usage_error(f"--token-file {path}: {e.strerror}") from e
    if len(token) < 16:
        raise usage_error(f"--token-file {path}: a token of at least 16 characters is needed")
    return token


def register(app: typer.Typer) -> None:
    for name in ("http", "sse"):
        app.command(name, context_settings={"help_option_names": ["-h", "--help"]})(_command(name))
