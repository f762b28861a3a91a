"""Real HTTP receivers on 127.0.0.1 for the SIEM sink tests: a Splunk-HEC-shaped endpoint, a
webhook (checking the HMAC signature) and an OTLP/HTTP logs receiver that decodes the
protobuf with the opentelemetry-proto package. Each can refuse (not listening), answer 500,
hang (read the batch, answer after the client gave up) or accept."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HEC_TOKEN = "hec-test-token"
WEBHOOK_SECRET = b"webhook-test-secret"


def decode_hec(body: bytes) -> list[dict[str, Any]]:
    """HEC's batch format: JSON objects concatenated (whitespace between them allowed)."""
    dec = json.JSONDecoder()
    text = body.decode()
    out, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, i = dec.raw_decode(text, i)
        out.append(obj)
    return out


class Receiver:
    """One endpoint; `kind` is splunk, webhook or otlp. `events` holds every event received,
    in arrival order (duplicates included: that is what at-least-once looks like)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.mode = "ok"  # ok | 500 | hang
        self.events: list[dict[str, Any]] = []
        self.requests = 0
        self.problems: list[str] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        path = {"splunk": "/services/collector/event", "webhook": "/hook", "otlp": "/v1/logs"}
        return f"http://127.0.0.1:{self.port}{path[self.kind]}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.handle(self, body)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def refuse(self) -> None:
        """Stop listening: connections are refused until `start()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.release.set()
        self.refuse()

    def decode(self, handler: BaseHTTPRequestHandler, body: bytes) -> list[dict[str, Any]]:
        if self.kind == "splunk":
            if handler.headers.get("Authorization") != f"Splunk {HEC_TOKEN}":
                self.problems.append(f"bad HEC auth {handler.headers.get('Authorization')!r}")
            out = []
            for env in decode_hec(body):
                if set(env) != {"time", "host", "source", "sourcetype", "event"}:
                    self.problems.append(f"bad HEC envelope keys {sorted(env)}")
                out.append(env["event"])
            return out
        if self.kind == "webhook":
            want = "sha256=" + hmac.new(WEBHOOK_SECRET, body, hashlib.sha256).hexdigest()
            if handler.headers.get("X-Mcpd-Signature-256") != want:
                self.problems.append("bad webhook signature")
            return list(json.loads(body))
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        req = ExportLogsServiceRequest()
        req.ParseFromString(body)
        out = []
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    ev = json.loads(rec.body.string_value)
                    attrs = {a.key: a.value.string_value for a in rec.attributes}
                    if attrs.get("mcpd.event.id") != ev.get("event_id"):
                        self.problems.append("OTLP attribute mcpd.event.id differs from the body")
                    out.append(ev)
        return out

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self.lock:
            self.requests += 1
            mode = self.mode
        if mode == "500":
            handler.send_response(500)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        events = self.decode(handler, body)
        with self.lock:
            self.events.extend(events)  # a receiver that stored the batch...
        if mode == "hang":
            self.release.wait(10)  # ...and answers after the client gave up
            return
        if self.kind == "otlp":
            from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
                ExportLogsServiceResponse,
            )

            reply = ExportLogsServiceResponse().SerializeToString()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/x-protobuf")
        else:
            reply = b'{"text":"Success","code":0}'
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)

    def ids(self) -> list[str]:
        with self.lock:
            return [e.get("event_id", "") for e in self.events]
