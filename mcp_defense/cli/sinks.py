"""Event options every runtime command shares (stdio now, http/sse next): where events go.

`--record`, `--record-required`, `--audit-log` and the SIEM sinks. A command declares the
`*Opt` parameters and calls `open_event_recorder` once; the result is the runtime's
`Recorder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mcp_defense.cli.common import usage_error
from mcp_defense.events.model import Event
from mcp_defense.events.record import EventSink, Recorder, open_recorder
from mcp_defense.events.sinks import SPLUNK_TOKEN_ENV, WEBHOOK_SECRET_ENV, SinkOptions, parse_size

RecordRequiredOpt = Annotated[
    bool,
    typer.Option(
        "--record-required",
        help="Deny every call while the recording (or audit log) cannot be written (fail closed).",
    ),
]
AuditLogOpt = Annotated[
    str | None,
    typer.Option(
        "--audit-log",
        help="Append events to FILE as a hash chain (check it with `mcp-defense audit verify`).",
    ),
]
SplunkOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--siem-splunk",
        help="Send events to Splunk HEC (repeatable): URL:TOKEN, URL:@TOKEN_FILE, "
        f"URL:env:VAR, or URL with the token in ${SPLUNK_TOKEN_ENV}.",
    ),
]
WebhookOpt = Annotated[
    list[str] | None,
    typer.Option("--siem-webhook", help="POST events as JSON arrays to URL (repeatable)."),
]
WebhookSecretOpt = Annotated[
    str | None,
    typer.Option(
        "--webhook-secret-file",
        help=f"Sign webhook bodies (HMAC-SHA256, X-Mcpd-Signature-256) with the secret in "
        f"FILE (or ${WEBHOOK_SECRET_ENV}).",
    ),
]
OtlpOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--otlp",
        help="Send events as OpenTelemetry logs over OTLP/HTTP to ENDPOINT (repeatable; "
        "headers from $OTEL_EXPORTER_OTLP_HEADERS).",
    ),
]
SinkCaOpt = Annotated[
    str | None,
    typer.Option("--sink-ca-file", help="CA bundle for the sinks' TLS (verified by default)."),
]
SinkTimeoutOpt = Annotated[
    float, typer.Option("--sink-timeout", help="Seconds before a sink request is a failure.")
]
SinkRetryOpt = Annotated[
    float,
    typer.Option("--sink-retry-max", help="Longest wait between two retries of a failing sink."),
]
SpoolDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--spool-dir", help="Where undelivered events wait (default: the state dir's spool/)."
    ),
]
SpoolMaxOpt = Annotated[
    str,
    typer.Option(
        "--spool-max-size",
        help="Per sink; past it the oldest events are dropped (and reported). E.g. 64M, 1G.",
    ),
]


def open_event_recorder(
    *,
    record: str | None,
    record_required: bool = False,
    audit_log: str | None = None,
    splunk: list[str] | None = None,
    webhook: list[str] | None = None,
    webhook_secret_file: str | None = None,
    otlp: list[str] | None = None,
    sink_ca_file: str | None = None,
    sink_timeout: float = 10.0,
    sink_retry_max: float = 60.0,
    spool_dir: Path | None = None,
    spool_max_size: str = "64M",
) -> Recorder:
    """The runtime's Recorder, or a usage error (exit 2) naming the bad option."""
    from mcp_defense.events.sinks import build_sinks

    if record_required and not (record or audit_log):
        raise usage_error("--record-required needs --record FILE or --audit-log FILE")
    try:
        max_bytes = parse_size(spool_max_size)
    except ValueError as e:
        raise usage_error(f"--spool-max-size: {e}") from e
    opts = SinkOptions(
        splunk=list(splunk or []),
        webhook=list(webhook or []),
        webhook_secret_file=webhook_secret_file,
        otlp=list(otlp or []),
        ca_file=sink_ca_file,
        timeout_s=sink_timeout,
        retry_max_s=sink_retry_max,
        spool_dir=spool_dir,
        spool_max_bytes=max_bytes,
    )
    holder: list[Recorder] = []

    def report(event: Event) -> None:  # a sink's dropped-events notice goes everywhere
        if holder:
            holder[0].emit(event)

    try:
        forwarders = build_sinks(opts, report=report)
    except (ValueError, OSError) as e:
        raise usage_error(str(e)) from e
    extra: list[EventSink] = []
    if audit_log:
        from mcp_defense.events.audit import AuditLog

        def to_sinks(event: Event) -> None:  # the chain head: to the sinks, not the log
            for f in forwarders:
                f.emit(event)

        try:
            extra.append(AuditLog(audit_log, forward=to_sinks))
        except OSError as e:
            for f in forwarders:
                f.close()
            raise usage_error(f"--audit-log {audit_log}: {e.strerror or e}") from e
    extra.extend(forwarders)
    try:
        recorder = open_recorder(record, extra=extra, record_required=record_required)
    except OSError as e:
        for s in extra:
            s.close()
        raise usage_error(f"--record {record}: {e.strerror or e}") from e
    holder.append(recorder)
    return recorder


def recorder_from_options(options: dict[str, Any]) -> Recorder:
    """`open_event_recorder` from a proxy command's parameters (the option names every proxy
    command shares: `--record`, `--audit-log`, `--siem-*`, `--otlp`, `--sink-*`, `--spool-*`)."""
    return open_event_recorder(
        record=options["record"],
        record_required=options["record_required"],
        audit_log=options["audit_log"],
        splunk=options["siem_splunk"],
        webhook=options["siem_webhook"],
        webhook_secret_file=options["webhook_secret_file"],
        otlp=options["otlp"],
        sink_ca_file=options["sink_ca_file"],
        sink_timeout=options["sink_timeout"],
        sink_retry_max=options["sink_retry_max"],
        spool_dir=options["spool_dir"],
        spool_max_size=options["spool_max_size"],
    )
