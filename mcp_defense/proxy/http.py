"""`mcp-defense http`: a policy-enforcing proxy in front of a Streamable HTTP MCP server.

Both eras of the transport go through the same code: the handshake era (`initialize`,
`Mcp-Session-Id`, a GET stream or 405, DELETE, `Last-Event-ID` resumption) and the 2026-07-28
per-request envelope (`server/discover`, no session id). Every POSTed message is given to a
`ProxySession` before the upstream sees a byte of it; what the session forwards is the exact
body received. Responses (JSON bodies or `text/event-stream`) flow back as they arrive: each
server message passes through the session (pending requests closed, results recorded, tool
annotations learnt), small ones held until whole, large ones streamed (`proxy/web.py`).

Sessions are keyed by the upstream's `Mcp-Session-Id`; a request without one (the first
`initialize`, or any 2026-07-28 request) gets a session of its own, adopted under the id the
upstream answers with. A denied call is answered the way the client asked for answers
(`Accept`: JSON first, else one SSE event), never forwarded.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mcp_defense.protocol.jsonrpc import (
    INVALID_REQUEST,
    SERVER_CLOSED,
    Kind,
    Oversize,
    encode,
    error_response,
    parse_message,
    sniff_id,
)
from mcp_defense.proxy.elicit import (
    ELICIT_PREFIX,
    can_elicit,
    elicitation_request,
    is_answer,
    verdict,
)
from mcp_defense.proxy.session import AskApproval, ProxyAction, ToClient, ToServer
from mcp_defense.proxy.web import (
    HOLD_BYTES,
    SESSION_HEADER,
    BodyTap,
    Guard,
    HubSession,
    Outbox,
    SessionHub,
    SSEReader,
    downstream_headers,
    relay_sse_piece,
    sse_event,
    upstream_headers,
    upstream_parts,
)

UPSTREAM_FAILED = SERVER_CLOSED  # the upstream could not be reached: as a server that is gone
HEADER_MISMATCH = -32001  # the MCP routing headers disagree with the body (2026-07-28)
_NAME_KEYS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
WELL_KNOWN = ("/.well-known/oauth-protected-resource", "/.well-known/oauth-authorization-server")


async def read_body(request: Request, limit: int) -> bytes | Oversize:
    """The request body, or Oversize (with its head) past `limit`: never held beyond it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        first = bytearray()
        async for chunk in request.stream():
            first += chunk
            if len(first) >= 4096:
                break
        return Oversize(int(declared), bytes(first[:4096]))
    body = bytearray()
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            async for rest in request.stream():
                size += len(rest)
            return Oversize(size, bytes(body[:4096]))
        body += chunk
    return bytes(body)


def routing_mismatch(headers: Any, body: bytes) -> str:
    """2026-07-28 requests mirror their method and name in `Mcp-Method`/`Mcp-Name`. A server
    or gateway may route on the headers, so they must say what the decided body says."""
    method_h = headers.get("mcp-method")
    name_h = headers.get("mcp-name")
    if method_h is None and name_h is None:
        return ""
    msg = parse_message(body)
    if msg.kind is not Kind.REQUEST:
        return ""
    if method_h is not None and method_h != msg.method:
        return f"Mcp-Method header {method_h!r} differs from the body's method {msg.method!r}"
    key = _NAME_KEYS.get(msg.method or "")
    if name_h is not None and key is not None:
        from mcp.shared.inbound import decode_header_value

        value = msg.params.get(key) if type(msg.params) is dict else None
        if decode_header_value(name_h) != value:
            return f"Mcp-Name header differs from the body's {key!r}"
    return ""


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept or "text/event-stream" not in accept


def answer(request: Request, messages: list[bytes], status: int = 200) -> Response:
    """The proxy's own answer (a refusal) in the form the client asked for."""
    if not messages:
        return Response(status_code=202)
    if wants_json(request):
        parts = [json.loads(m) for m in messages]
        body = parts[0] if len(parts) == 1 else [p for part in parts for p in _as_list(part)]
        return JSONResponse(body, status_code=status)
    data = b"".join(sse_event(m) for m in messages)
    return Response(data, status_code=status, media_type="text/event-stream")


def _as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else [x]


class StreamableHttpProxy:
    def __init__(
        self,
        hub: SessionHub,
        upstream: str,
        guard: Guard,
        client: httpx2.AsyncClient,
        max_message_bytes: int,
        approval_timeout: float = 60.0,
    ) -> None:
        self.hub = hub
        self.upstream = upstream
        self.origin, self.path = upstream_parts(upstream)
        self.guard = guard
        self.client = client
        self.max_message_bytes = max_message_bytes
        self.approval_timeout = approval_timeout
        self._elicits: dict[str, asyncio.Future[tuple[bool, str]]] = {}

    def routes(self) -> list[Route]:
        return [
            Route(self.path, self.handle, methods=["GET", "POST", "DELETE"]),
            *[Route(p + "{rest:path}", self.well_known, methods=["GET"]) for p in WELL_KNOWN],
        ]

    def app(self, extra: list[Any] | None = None) -> Starlette:
        return Starlette(routes=[*self.routes(), *(extra or [])])

    async def handle(self, request: Request) -> Response:
        refused = self.guard.refuse(request.headers)
        if refused is not None:
            return refused
        if request.method == "POST":
            return await self.post(request)
        if request.method == "GET":
            return await self.get(request)
        return await self.delete(request)

    async def well_known(self, request: Request) -> Response:
        """OAuth discovery documents pass through untouched (the client's auth is the
        upstream's business); only the proxy's own door is checked."""
        refused = self.guard.refuse(request.headers)
        if refused is not None:
            return refused
        url = (
            self.origin + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        )
        return await self._relay(request, "GET", url, None, None)

    # --- POST: every client message ------------------------------------------------------------

    async def post(self, request: Request) -> Response:
        body = await read_body(request, self.max_message_bytes)
        sid = request.headers.get(SESSION_HEADER)
        hs = self.hub.get(sid)
        if hs is None:
            hs = self.hub.new()
            if sid:  # a session the upstream knows and we do not (we restarted): decide anyway
                self.hub.adopt(hs, sid)
        if isinstance(body, bytes):
            mismatch = routing_mismatch(request.headers, body)
            if mismatch:
                err = error_response(sniff_id(body), HEADER_MISMATCH, f"mcp-defense: {mismatch}")
                return answer(request, [err], status=400)
        if hs.killed:
            rid = sniff_id(body) if isinstance(body, bytes) else None
            return answer(request, [error_response(rid, INVALID_REQUEST, hs.killed)])
        if isinstance(body, bytes) and self._elicits and self._elicitation_answer(body):
            return Response(status_code=202)  # the user's answer to the proxy: never forwarded
        box = Outbox()
        actions = hs.session.client_message(body)
        if self._can_elicit(request, hs) and any(isinstance(a, AskApproval) for a in actions):
            return StreamingResponse(
                self._elicit_stream(request, hs, actions), media_type="text/event-stream"
            )
        await self.hub.run(hs, actions, box)
        if not box.forward:
            if not sid and not hs.session.pending:
                self.hub.end(hs.key)
            return answer(request, box.replies)
        return await self._forward(request, hs, box.forward[0])

    async def _forward(self, request: Request, hs: HubSession, out: ToServer) -> Response:
        headers = upstream_headers(request.headers.items())
        try:
            req = self.client.build_request(
                "POST", self.upstream, content=out.data, headers=headers
            )
            resp = await self.client.send(req, stream=True)
        except httpx2.HTTPError as e:
            return await self._upstream_failed(request, hs, out, f"{type(e).__name__}: {e}")
        new_sid = resp.headers.get(SESSION_HEADER)
        if new_sid and hs.key != new_sid:
            self.hub.adopt(hs, new_sid)
        ctype = resp.headers.get("content-type", "")
        head = downstream_headers(resp.headers.items())
        if resp.status_code == 404 and request.headers.get(SESSION_HEADER):
            self.hub.end(hs.key)  # the upstream forgot the session: so do we
        if ctype.startswith("text/event-stream"):
            return StreamingResponse(
                self._sse_body(resp, hs),
                status_code=resp.status_code,
                headers=head,
                media_type=None,
            )
        if ctype.startswith("application/json") and resp.status_code < 300:
            length = resp.headers.get("content-length", "")
            if length.isdigit() and int(length) <= self._hold(hs):
                # Small and whole: one read, one response (no streaming machinery per call).
                data = await resp.aread()
                await resp.aclose()
                passed = b"".join(
                    a.data for a in hs.session.server_message(data) if isinstance(a, ToClient)
                )
                return Response(passed, status_code=resp.status_code, headers=head)
            return StreamingResponse(
                self._json_body(resp, hs), status_code=resp.status_code, headers=head
            )
        # 202 for a notification or a response; an HTTP error from the upstream: pass it on,
        # and close what it leaves pending (no JSON-RPC answer will come for it).
        data = await resp.aread()
        await resp.aclose()
        if resp.status_code >= 400 and out.request_id is not None:
            hs.session.server_write_failed(out.request_id)
        return Response(data, status_code=resp.status_code, headers=head)

    async def _upstream_failed(
        self, request: Request, hs: HubSession, out: ToServer, why: str
    ) -> Response:
        """The upstream could not be reached: close what was forwarded (its outcome is
        recorded) and answer the client with an error that says so."""
        hs.session.server_write_failed(out.request_id)
        if out.request_id is None:
            return JSONResponse({"error": f"mcp-defense: upstream failed: {why}"}, 502)
        err = error_response(
            out.request_id, UPSTREAM_FAILED, f"mcp-defense: upstream failed: {why}"
        )
        return answer(request, [err])

    async def _json_body(self, resp: httpx2.Response, hs: HubSession) -> AsyncIterator[bytes]:
        tap = BodyTap(self._hold(hs))
        try:
            async for chunk in resp.aiter_raw():
                now = tap.feed(chunk)
                if tap.size > self.max_message_bytes:
                    hs.session.server_message(Oversize(tap.size, bytes(tap.held[:4096])))
                    raise ConnectionAbortedError("mcp-defense: server message over the limit")
                if now:
                    yield now
            if tap.streaming:
                hs.session.server_message(tap.streamed())
                return
            for action in hs.session.server_message(bytes(tap.held)):
                if isinstance(action, ToClient):
                    yield action.data
        finally:
            await resp.aclose()

    async def _sse_body(self, resp: httpx2.Response, hs: HubSession) -> AsyncIterator[bytes]:
        reader = SSEReader(self._hold(hs))
        try:
            async for chunk in resp.aiter_raw():
                for piece in reader.feed(chunk):
                    for data in relay_sse_piece(piece, hs.session, self.max_message_bytes):
                        yield data
            for piece in reader.close():
                for data in relay_sse_piece(piece, hs.session, self.max_message_bytes):
                    yield data
        finally:
            await resp.aclose()

    def _hold(self, hs: HubSession) -> int:
        """How much of a server message is held whole: everything (up to the size limit)
        when response rules may rewrite results, else a little, and the rest streams."""
        return self.max_message_bytes if hs.session.holds_results else HOLD_BYTES

    # --- approval through MCP elicitation --------------------------------------------------------

    def _can_elicit(self, request: Request, hs: HubSession) -> bool:
        """Ask the person through the client (its own UI shows the question; the model does
        not answer it) when approval is on, the client declared elicitation and reads SSE."""
        return (
            self.hub.config.approvals is not None
            and can_elicit(hs.session.client_capabilities)
            and "text/event-stream" in request.headers.get("accept", "")
        )

    def _elicitation_answer(self, body: bytes) -> bool:
        msg = parse_message(body)
        if not is_answer(msg):
            return False
        fut = self._elicits.pop(msg.id, None)
        if fut is not None and not fut.done():
            fut.set_result(verdict(msg))
        return True  # the proxy's own question: never forwarded, even when asked no more

    async def _elicit_stream(
        self, request: Request, hs: HubSession, actions: list[ProxyAction]
    ) -> AsyncIterator[bytes]:
        """The held call's response stream: the question first, then the call's outcome."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        box = Outbox()
        asked: dict[int, bool] = {}

        async def ask(a: AskApproval) -> tuple[bool, str]:
            eid = ELICIT_PREFIX + secrets.token_hex(8)
            fut: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
            self._elicits[eid] = fut
            asked[a.ticket] = False
            queue.put_nowait(sse_event(encode(elicitation_request(eid, a))))
            try:
                return await asyncio.wait_for(fut, self.approval_timeout)
            except TimeoutError:
                return False, f"approval timed out after {self.approval_timeout:g}s"
            finally:
                asked[a.ticket] = True
                self._elicits.pop(eid, None)

        async def decide() -> None:
            try:
                await self.hub.run(hs, actions, box, ask)
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(decide())
        try:
            while (item := await queue.get()) is not None:
                yield item
            await task
        finally:
            if not task.done():  # the client went away while the person was asked
                task.cancel()
                for ticket, answered in asked.items():
                    if not answered:
                        hs.session.approval_answered(ticket, False, "client disconnected")
        for r in box.replies:
            yield sse_event(r)
        if not box.forward:
            return
        out = box.forward[0]
        headers = upstream_headers(request.headers.items())
        try:
            req = self.client.build_request(
                "POST", self.upstream, content=out.data, headers=headers
            )
            resp = await self.client.send(req, stream=True)
        except httpx2.HTTPError as e:
            hs.session.server_write_failed(out.request_id)
            why = f"mcp-defense: upstream failed: {type(e).__name__}: {e}"
            yield sse_event(error_response(out.request_id, UPSTREAM_FAILED, why))
            return
        ctype = resp.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            async for data in self._sse_body(resp, hs):
                yield data
        elif ctype.startswith("application/json") and resp.status_code < 300:
            # One JSON message as one SSE event: JSON's only raw line breaks are whitespace.
            yield b"event: message\ndata: "
            async for data in self._json_body(resp, hs):
                yield data.replace(b"\n", b" ").replace(b"\r", b" ")
            yield b"\n\n"
        else:
            await resp.aclose()
            hs.session.server_write_failed(out.request_id)
            why = f"mcp-defense: upstream answered HTTP {resp.status_code}"
            yield sse_event(error_response(out.request_id, UPSTREAM_FAILED, why))

    # --- GET: the server's own stream; DELETE: the end of a session ---------------------------

    async def get(self, request: Request) -> Response:
        sid = request.headers.get(SESSION_HEADER)
        hs = self.hub.get(sid)
        if hs is None:
            hs = self.hub.new()
            if sid:
                self.hub.adopt(hs, sid)
        return await self._relay(request, "GET", self.upstream, None, hs)

    async def delete(self, request: Request) -> Response:
        sid = request.headers.get(SESSION_HEADER)
        response = await self._relay(request, "DELETE", self.upstream, None, None)
        if sid and response.status_code < 300:
            self.hub.end(sid)
        return response

    async def _relay(
        self, request: Request, method: str, url: str, body: bytes | None, hs: HubSession | None
    ) -> Response:
        headers = upstream_headers(request.headers.items())
        try:
            req = self.client.build_request(method, url, content=body, headers=headers)
            resp = await self.client.send(req, stream=True)
        except httpx2.HTTPError as e:
            return JSONResponse({"error": f"mcp-defense: upstream failed: {e}"}, 502)
        head = downstream_headers(resp.headers.items())
        if hs is not None and resp.headers.get("content-type", "").startswith("text/event-stream"):
            return StreamingResponse(
                self._sse_body(resp, hs), status_code=resp.status_code, headers=head
            )
        data = await resp.aread()
        await resp.aclose()
        return Response(data, status_code=resp.status_code, headers=head)
