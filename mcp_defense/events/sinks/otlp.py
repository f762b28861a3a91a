"""OpenTelemetry logs over OTLP/HTTP, through the OpenTelemetry SDK's log records and its
OTLP exporter, so any collector (Datadog, Elastic, Grafana, Splunk…) can take them.

Each event becomes one log record: the body is the event's JSON, the event name is
`mcp_defense.<type>`, and the attributes carry what collectors index on (event id, type,
decision, rule). Headers (e.g. an API key) come from `OTEL_EXPORTER_OTLP_HEADERS` /
`OTEL_EXPORTER_OTLP_LOGS_HEADERS`, as for any OpenTelemetry exporter. Retries and the spool
are the forwarder's, so the exporter's own retries are bounded by the request timeout.
"""

from __future__ import annotations

import json
import logging
import socket
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mcp_defense import __version__ as VERSION
from mcp_defense.events.sinks.http import DeliveryError, redact

_SEVERITY = {"deny": 13, "kill": 17, "require_approval": 13, "alert": 13}  # WARN / ERROR


class OtlpLogs:
    def __init__(self, endpoint: str, *, timeout: float = 10.0, ca_file: str | None = None) -> None:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        p = urlsplit(endpoint)
        if p.scheme not in ("http", "https") or not p.netloc:
            raise ValueError(f"--otlp: not an http(s) URL: {redact(endpoint)}")
        if p.path in ("", "/"):
            endpoint = urlunsplit((p.scheme, p.netloc, "/v1/logs", p.query, ""))
        self.name = f"otlp {redact(endpoint)}"
        # The exporter logs each failure at ERROR; the forwarder warns once per outage.
        logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)
        self._exporter = OTLPLogExporter(
            endpoint=endpoint, timeout=timeout, certificate_file=ca_file
        )
        self._resource = Resource.create(
            {
                "service.name": "mcp-defense",
                "service.version": VERSION,
                "host.name": socket.gethostname(),
            }
        )
        self._scope = InstrumentationScope("mcp_defense", VERSION)

    def _record(self, line: bytes) -> Any:
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.sdk._logs import ReadableLogRecord

        obj = json.loads(line)
        etype = str(obj.get("type", "event"))
        attrs = {"mcpd.event.id": str(obj.get("event_id", "")), "mcpd.event.type": etype}
        for key in ("decision", "rule", "tool", "archetype", "agent_id", "correlation_id"):
            if isinstance(obj.get(key), str):
                attrs[f"mcpd.{key}"] = obj[key]
        severity = _SEVERITY.get(str(obj.get("decision", obj.get("verdict", ""))), 9)
        if etype in ("kill", "events_dropped", "recording_gap"):
            severity = 17
        ts = obj.get("ts")
        ns = None
        if isinstance(ts, str):
            try:
                ns = int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1e9)
            except ValueError:
                ns = None
        record = LogRecord(
            timestamp=ns,
            severity_number=SeverityNumber(severity),
            severity_text={9: "INFO", 13: "WARN", 17: "ERROR"}[severity],
            body=line.decode("utf-8", "replace"),
            attributes=attrs,
            event_name=f"mcp_defense.{etype}",
        )
        return ReadableLogRecord(
            log_record=record, resource=self._resource, instrumentation_scope=self._scope
        )

    def send(self, lines: list[bytes]) -> None:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        result = self._exporter.export([self._record(x) for x in lines])
        if result is not LogRecordExportResult.SUCCESS:
            raise DeliveryError(f"OTLP export to {self.name} failed")

    def close(self) -> None:
        self._exporter.shutdown()
