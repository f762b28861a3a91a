"""Run one HTTP proxy (Streamable HTTP or legacy SSE) until Ctrl-C or SIGTERM.

The pieces: a `Guard` for the proxy's own door, a `SessionHub` of `ProxySession`s, the
approval page when `--approval` is on, one upstream HTTP client (TLS verified unless told
otherwise), served by uvicorn on one asyncio loop.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import uvicorn

from mcp_defense.events.record import Recorder
from mcp_defense.policy.table import LearningState
from mcp_defense.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_BYTES
from mcp_defense.proxy.pins import PinStore
from mcp_defense.proxy.session import TableLike
from mcp_defense.proxy.web import Guard, HubConfig, SessionHub
from mcp_defense.proxy.webapproval import PAGE, Approvals


@dataclass
class HttpProxyOptions:
    transport: str  # "http" (Streamable HTTP) or "sse" (legacy HTTP+SSE)
    upstream: str
    archetype: str
    get_table: Callable[[], TableLike]
    host: str = "127.0.0.1"
    port: int = 8080
    agent_id: str = "unknown"
    observe: bool = False
    approval: bool = False
    approval_timeout: float = 60.0
    recorder: Recorder = field(default_factory=Recorder)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    learning: LearningState | None = None
    token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    verify: Any = True  # True, or an ssl.SSLContext with --upstream-ca
    pins: PinStore | None = None


def build_app(o: HttpProxyOptions, client: httpx2.AsyncClient) -> tuple[Any, Approvals | None]:
    """The ASGI app of one proxy (tests drive it in-process too)."""
    from mcp_defense.proxy.http import StreamableHttpProxy
    from mcp_defense.proxy.sse import LegacySseProxy

    guard = Guard(o.host, o.port, o.token, o.allowed_hosts, o.allowed_origins)
    approvals = Approvals(guard, o.approval_timeout) if o.approval else None
    if approvals is not None:
        approvals.page_url = f"http://{_url_host(o.host)}:{o.port}{PAGE}"
    hub = SessionHub(
        HubConfig(
            archetype=o.archetype,
            get_table=o.get_table,
            upstream=o.upstream,
            transport=o.transport,
            agent_id=o.agent_id,
            observe=o.observe,
            recorder=o.recorder,
            max_message_bytes=o.max_message_bytes,
            learning=o.learning,
            approvals=approvals,
            pins=o.pins,
        )
    )
    proxy: StreamableHttpProxy | LegacySseProxy
    if o.transport == "http":
        proxy = StreamableHttpProxy(
            hub, o.upstream, guard, client, o.max_message_bytes, o.approval_timeout
        )
    else:
        proxy = LegacySseProxy(hub, o.upstream, guard, client, o.max_message_bytes)
    return proxy.app(approvals.routes() if approvals is not None else None), approvals


def upstream_client(verify: Any = True) -> httpx2.AsyncClient:
    # No read timeout: SSE streams and slow tools are long; connects still time out.
    return httpx2.AsyncClient(
        verify=verify,
        timeout=httpx2.Timeout(connect=10.0, read=None, write=30.0, pool=None),
        follow_redirects=False,
        trust_env=True,
        limits=httpx2.Limits(max_connections=None, max_keepalive_connections=64),
    )


async def serve(o: HttpProxyOptions) -> int:
    client = upstream_client(o.verify)
    app, approvals = build_app(o, client)
    config = uvicorn.Config(
        app,
        host=o.host,
        port=o.port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=3,
        http="httptools",
    )
    server = uvicorn.Server(config)
    path = o.upstream.split("://", 1)[1].partition("/")[2]
    print(
        f"mcp-defense: {o.transport} proxy on http://{_url_host(o.host)}:{o.port}/{path} "
        f"-> {o.upstream} (archetype {o.archetype}" + (", observe only" if o.observe else "") + ")",
        file=sys.stderr,
        flush=True,
    )
    try:
        await server.serve()
    finally:
        if approvals is not None:
            approvals.close()
        await client.aclose()
    if not server.started:
        raise OSError(f"cannot listen on {o.host}:{o.port}")
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
