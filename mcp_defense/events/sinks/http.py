"""Splunk HEC and webhook transports: one HTTPS POST per batch (standard library only).

TLS is verified against the system's trust store (or `--sink-ca-file`); a token or a webhook
secret comes from a file or the environment, so it need not appear in argv.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import urllib.error
import urllib.request
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from mcp_defense import __version__ as VERSION

USER_AGENT = f"mcp-defense/{VERSION}"


class DeliveryError(OSError):
    """The sink did not accept the batch (retried by the forwarder)."""


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)  # verifies host and chain


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, context: ssl.SSLContext
) -> None:
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("User-Agent", USER_AGENT)
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            resp.read()
    except urllib.error.HTTPError as e:
        raise DeliveryError(f"HTTP {e.code} from {redact(url)}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise DeliveryError(f"{redact(url)}: {reason}") from None


def redact(url: str) -> str:
    """A URL fit for messages and spool names: no user info, query or fragment."""
    p = urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urlunsplit((p.scheme, host, p.path, "", ""))


def _epoch(ts: object) -> float | None:
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class SplunkHec:
    """`POST /services/collector/event` with `Authorization: Splunk TOKEN`; the body is the
    batch's HEC envelopes concatenated, as HEC accepts."""

    def __init__(
        self, url: str, token: str, *, timeout: float = 10.0, ca_file: str | None = None
    ) -> None:
        p = urlsplit(url)
        if p.scheme not in ("http", "https") or not p.netloc:
            raise ValueError(f"--siem-splunk: not an http(s) URL: {redact(url)}")
        if p.path in ("", "/"):
            url = urlunsplit((p.scheme, p.netloc, "/services/collector/event", p.query, ""))
        self.url = url
        self.name = f"splunk {redact(url)}"
        self._headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
        self._timeout = timeout
        self._ctx = tls_context(ca_file)
        self._host = socket.gethostname()

    def envelope(self, line: bytes) -> bytes:
        try:
            ts = _epoch(json.loads(line).get("ts"))
        except (ValueError, AttributeError):
            ts = None
        head: dict[str, object] = {
            "host": self._host,
            "source": "mcp-defense",
            "sourcetype": "mcp-defense:event",
        }
        if ts is not None:
            head = {"time": round(ts, 6), **head}
        return json.dumps(head, separators=(",", ":")).encode()[:-1] + b',"event":' + line + b"}"

    def send(self, lines: list[bytes]) -> None:
        body = b"\n".join(self.envelope(x) for x in lines)
        post(self.url, body, self._headers, self._timeout, self._ctx)

    def close(self) -> None:
        pass


SIGNATURE_HEADER = "X-Mcpd-Signature-256"


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Webhook:
    """A JSON array of events per POST; with a secret, `X-Mcpd-Signature-256: sha256=HMAC`
    of the body (the receiver recomputes it with the shared secret)."""

    def __init__(
        self,
        url: str,
        *,
        secret: bytes | None = None,
        timeout: float = 10.0,
        ca_file: str | None = None,
    ) -> None:
        p = urlsplit(url)
        if p.scheme not in ("http", "https") or not p.netloc:
            raise ValueError(f"--siem-webhook: not an http(s) URL: {redact(url)}")
        self.url = url
        self.name = f"webhook {redact(url)}"
        self._secret = secret
        self._timeout = timeout
        self._ctx = tls_context(ca_file)

    def send(self, lines: list[bytes]) -> None:
        body = b"[" + b",".join(lines) + b"]"
        headers = {"Content-Type": "application/json"}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        post(self.url, body, headers, self._timeout, self._ctx)

    def close(self) -> None:
        pass
