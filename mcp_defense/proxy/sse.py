"""`mcp-defense sse`: a policy-enforcing proxy in front of a legacy HTTP+SSE MCP server.

The legacy transport has two halves: a long-lived `GET /sse` stream that carries every
server message (its first event, `endpoint`, says where to POST), and POSTs of client
messages answered `202 Accepted`. Paths are preserved (`/sse` here is `/sse` upstream). The
`endpoint` event is rewritten when it is absolute, so the client posts here. Each client
stream is one `ProxySession`, found again from the endpoint its POSTs go to.

A denied call is answered as an SDK client expects: the POST gets 202 and the JSON-RPC error
arrives as a `message` event on that client's stream, in order with the server's messages
(the published tool answered in the POST body, where no SDK client looks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mcp_defense.protocol.jsonrpc import INVALID_REQUEST, error_response, sniff_id
from mcp_defense.proxy.http import WELL_KNOWN, read_body
from mcp_defense.proxy.web import (
    HOLD_BYTES,
    Guard,
    HubSession,
    Outbox,
    SessionHub,
    SSEPiece,
    SSEReader,
    Whole,
    downstream_headers,
    relay_sse_piece,
    sse_event,
    upstream_headers,
    upstream_parts,
)

_END = object()


class _Stream:
    """One client's SSE stream: what the upstream sends and what the proxy answers itself,
    merged in one queue so that order is kept."""

    def __init__(self, hs: HubSession) -> None:
        self.hs = hs
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.target = ""  # the absolute upstream URL client POSTs go to


class LegacySseProxy:
    def __init__(
        self,
        hub: SessionHub,
        upstream: str,
        guard: Guard,
        client: httpx2.AsyncClient,
        max_message_bytes: int,
    ) -> None:
        self.hub = hub
        self.origin, path = upstream_parts(upstream)
        self.sse_path = path if path != "/" else "/sse"
        self.sse_url = self.origin + self.sse_path
        self.guard = guard
        self.client = client
        self.max_message_bytes = max_message_bytes
        self.streams: dict[str, _Stream] = {}  # endpoint path?query → stream

    def routes(self) -> list[Route]:
        return [
            Route(self.sse_path, self.stream, methods=["GET"]),
            *[Route(p + "{rest:path}", self.passthrough, methods=["GET"]) for p in WELL_KNOWN],
            Route("/{path:path}", self.post, methods=["POST"]),
        ]

    def app(self, extra: list[Any] | None = None) -> Starlette:
        return Starlette(routes=[*(extra or []), *self.routes()])

    async def passthrough(self, request: Request) -> Response:
        refused = self.guard.refuse(request.headers)
        if refused is not None:
            return refused
        url = (
            self.origin + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        )
        try:
            resp = await self.client.get(url, headers=upstream_headers(request.headers.items()))
        except httpx2.HTTPError as e:
            return JSONResponse({"error": f"mcp-defense: upstream failed: {e}"}, 502)
        return Response(
            resp.content, resp.status_code, headers=downstream_headers(resp.headers.items())
        )

    # --- the stream ------------------------------------------------------------------------------

    async def stream(self, request: Request) -> Response:
        refused = self.guard.refuse(request.headers)
        if refused is not None:
            return refused
        url = self.sse_url + (f"?{request.url.query}" if request.url.query else "")
        try:
            req = self.client.build_request(
                "GET", url, headers=upstream_headers(request.headers.items())
            )
            resp = await self.client.send(req, stream=True)
        except httpx2.HTTPError as e:
            return JSONResponse({"error": f"mcp-defense: upstream failed: {e}"}, 502)
        head = downstream_headers(resp.headers.items())
        if not resp.headers.get("content-type", "").startswith("text/event-stream"):
            data = await resp.aread()
            await resp.aclose()
            return Response(data, resp.status_code, headers=head)
        st = _Stream(self.hub.new())
        proxy_origin = f"{request.url.scheme}://{request.headers.get('host', '')}"
        pump = asyncio.create_task(self._pump(resp, st, proxy_origin))
        return StreamingResponse(self._drain(st, pump), resp.status_code, headers=head)

    async def _pump(self, resp: httpx2.Response, st: _Stream, proxy_origin: str) -> None:
        """Read the upstream stream into the client's queue, each message through the session."""
        reader = SSEReader(self.max_message_bytes if st.hs.session.holds_results else HOLD_BYTES)
        try:
            async for chunk in resp.aiter_raw():
                for piece in reader.feed(chunk):
                    self._piece(piece, st, proxy_origin)
            for piece in reader.close():
                self._piece(piece, st, proxy_origin)
        except (httpx2.HTTPError, ConnectionAbortedError):
            pass  # the upstream went away, or sent a message over the limit: the stream ends
        finally:
            await resp.aclose()
            st.queue.put_nowait(_END)

    def _piece(self, piece: SSEPiece, st: _Stream, proxy_origin: str) -> None:
        if isinstance(piece, Whole) and piece.event == "endpoint" and piece.data is not None:
            st.queue.put_nowait(self._endpoint(piece.data, st, proxy_origin))
            return
        for data in relay_sse_piece(piece, st.hs.session, self.max_message_bytes):
            st.queue.put_nowait(data)

    def _endpoint(self, data: bytes, st: _Stream, proxy_origin: str) -> bytes:
        """Remember where this client posts; point an absolute endpoint at the proxy."""
        text = data.decode("utf-8", "replace").strip()
        st.target = urljoin(self.sse_url, text)
        u = urlsplit(st.target)
        key = u.path + (f"?{u.query}" if u.query else "")
        self.streams[key] = st
        self.hub.adopt(st.hs, key)
        shown = text if "://" not in text and not text.startswith("//") else proxy_origin + key
        return sse_event(shown.encode(), "endpoint")

    async def _drain(self, st: _Stream, pump: asyncio.Task[None]) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await st.queue.get()
                if item is _END:
                    return
                yield item
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            self.streams.pop(st.hs.key, None)
            self.hub.end(st.hs.key)

    # --- client messages -------------------------------------------------------------------------

    async def post(self, request: Request) -> Response:
        refused = self.guard.refuse(request.headers)
        if refused is not None:
            return refused
        key = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        st = self.streams.get(key)
        body = await read_body(request, self.max_message_bytes)
        hs = st.hs if st is not None else self.hub.new()
        box = Outbox()
        if hs.killed:
            rid = sniff_id(body) if isinstance(body, bytes) else None
            box.replies.append(error_response(rid, INVALID_REQUEST, hs.killed))
        else:
            await self.hub.run(hs, hs.session.client_message(body), box)
        if st is not None:
            for r in box.replies:  # answers travel where the client reads them: its stream
                st.queue.put_nowait(sse_event(r))
        elif box.replies:  # no stream of ours for this endpoint: the body is the only way back
            answers = [json.loads(r) for r in box.replies]
            return JSONResponse(answers[0] if len(answers) == 1 else answers, status_code=200)
        if not box.forward:
            return Response("Accepted", status_code=202)
        target = st.target if st is not None and st.target else self.origin + key
        try:
            resp = await self.client.post(
                target,
                content=box.forward[0].data,
                headers=upstream_headers(request.headers.items()),
            )
        except httpx2.HTTPError as e:
            hs.session.server_write_failed(box.forward[0].request_id)
            return JSONResponse({"error": f"mcp-defense: upstream failed: {e}"}, 502)
        if resp.status_code >= 400 and box.forward[0].request_id is not None:
            hs.session.server_write_failed(box.forward[0].request_id)
        return Response(
            resp.content, resp.status_code, headers=downstream_headers(resp.headers.items())
        )
