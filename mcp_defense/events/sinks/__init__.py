"""SIEM sinks (`--siem-splunk`, `--siem-webhook`, `--otlp`) built from command-line options.

One function, `build_sinks`, turns the options every runtime command shares (stdio today,
http/sse next) into `Forwarder`s; the command adds them to its `Recorder`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mcp_defense.events.model import Event
from mcp_defense.events.sinks.forwarder import DeliveryConfig, Forwarder, Transport

SPLUNK_TOKEN_ENV = "MCPD_SPLUNK_TOKEN"
WEBHOOK_SECRET_ENV = "MCPD_WEBHOOK_SECRET"


@dataclass(slots=True)
class SinkOptions:
    splunk: list[str] = field(default_factory=list)  # URL[:TOKEN | :@FILE | :env:NAME]
    webhook: list[str] = field(default_factory=list)
    webhook_secret_file: str | None = None
    otlp: list[str] = field(default_factory=list)
    ca_file: str | None = None
    timeout_s: float = 10.0
    retry_max_s: float = 60.0
    spool_dir: Path | None = None
    spool_max_bytes: int = 64 << 20

    @property
    def any(self) -> bool:
        return bool(self.splunk or self.webhook or self.otlp)


def parse_size(text: str) -> int:
    """`64M`, `1G`, `512k` or plain bytes."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    n = int(float(t[:-1] if mult != 1 else t) * mult)
    if n < 4096:
        raise ValueError(f"size {text!r} is below 4 KiB")
    return n


def _read_secret(path: str, what: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as e:
        raise ValueError(f"{what}: cannot read {path}: {e.strerror or e}") from e
    if not value:
        raise ValueError(f"{what}: {path} is empty")
    return value


def split_splunk(spec: str) -> tuple[str, str]:
    """`URL:TOKEN`, `URL:@FILE`, `URL:env:NAME` or just `URL` (token in $MCPD_SPLUNK_TOKEN)."""
    token_spec = ""
    url = spec
    if spec.count(":") >= 2:
        if ":env:" in spec:
            url, _, name = spec.rpartition(":env:")
            token_spec = "env:" + name
        elif ":@" in spec:
            url, _, path = spec.rpartition(":@")
            token_spec = "@" + path
        else:
            head, _, tail = spec.rpartition(":")
            if urlsplit(head).netloc and tail and "/" not in tail and not tail.isdigit():
                url, token_spec = head, tail
    if token_spec.startswith("env:"):
        name = token_spec[4:]
        token = os.environ.get(name, "")
        if not token:
            raise ValueError(f"--siem-splunk: ${name} is not set")
    elif token_spec.startswith("@"):
        token = _read_secret(token_spec[1:], "--siem-splunk")
    elif token_spec:
        token = token_spec
    else:
        token = os.environ.get(SPLUNK_TOKEN_ENV, "")
        if not token:
            raise ValueError(
                f"--siem-splunk {url}: no token (give URL:TOKEN, URL:@FILE, URL:env:NAME "
                f"or set ${SPLUNK_TOKEN_ENV})"
            )
    return url, token


def transports(opts: SinkOptions) -> list[Transport]:
    from mcp_defense.events.sinks.http import SplunkHec, Webhook

    out: list[Transport] = []
    for spec in opts.splunk:
        url, token = split_splunk(spec)
        out.append(SplunkHec(url, token, timeout=opts.timeout_s, ca_file=opts.ca_file))
    secret: bytes | None = None
    if opts.webhook_secret_file:
        secret = _read_secret(opts.webhook_secret_file, "--webhook-secret-file").encode()
    elif os.environ.get(WEBHOOK_SECRET_ENV):
        secret = os.environ[WEBHOOK_SECRET_ENV].encode()
    for url in opts.webhook:
        out.append(Webhook(url, secret=secret, timeout=opts.timeout_s, ca_file=opts.ca_file))
    if opts.otlp:
        from mcp_defense.events.sinks.otlp import OtlpLogs

        for url in opts.otlp:
            out.append(OtlpLogs(url, timeout=opts.timeout_s, ca_file=opts.ca_file))
    return out


def build_sinks(
    opts: SinkOptions, *, report: Callable[[Event], None] | None = None
) -> list[Forwarder]:
    """Forwarders for every sink option; raises ValueError/OSError on a bad option (the
    command turns it into a usage error)."""
    if not opts.any:
        return []
    from mcp_defense.resources import state_dir

    config = DeliveryConfig(
        spool_dir=opts.spool_dir or state_dir() / "spool",
        spool_max_bytes=opts.spool_max_bytes,
        retry_min_s=min(0.5, opts.retry_max_s),
        retry_max_s=opts.retry_max_s,
        close_timeout_s=min(5.0, opts.timeout_s + 1.0),
    )
    return [Forwarder(t, config, report=report) for t in transports(opts)]
