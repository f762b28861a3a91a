"""What both HTTP transports share: guarding the proxy's own door, headers, SSE framing.

The HTTP transports (`proxy/http.py` for Streamable HTTP, `proxy/sse.py` for the legacy
HTTP+SSE transport) are byte movers around `proxy.session.ProxySession`, like `proxy/stdio.py`:
every decision is the session's. What is here is only HTTP plumbing:

* `Guard`: the proxy's own door. Loopback by default, `Host` and `Origin` validated (DNS
  rebinding, as the MCP specification requires of local servers), an optional token of its
  own compared in constant time. The token travels in `X-MCP-Defense-Token` so the client's
  `Authorization` header stays the upstream's business (OAuth passes through untouched).
* header filtering both ways (hop-by-hop headers, `Host`, our token and `Origin` stop here);
* `SSEReader`: an incremental `text/event-stream` reader that passes events through byte for
  byte, holding a small event whole (so the session sees it before the client does) and
  streaming a large one (only its head and tail are kept): a 16 MiB result never sits in
  memory twice;
* `SessionHub`: the sessions of one proxy, each a `ProxySession` with the same table getter,
  recorder and approval path, created on first sight of a client and forgotten at its end.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse, Response

from mcp_defense.events.model import KillEvent, SessionStart
from mcp_defense.events.record import Recorder
from mcp_defense.policy.facts import ToolDefinition
from mcp_defense.policy.table import LearningState
from mcp_defense.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_BYTES, Streamed
from mcp_defense.proxy.pins import PinStore
from mcp_defense.proxy.session import (
    AskApproval,
    Kill,
    ProxyAction,
    ProxySession,
    TableLike,
    Tasks,
    ToClient,
    ToServer,
)

TOKEN_HEADER = "x-mcp-defense-token"
SESSION_HEADER = "mcp-session-id"
# A server message up to this size is held whole and shown to the session before the client
# sees any of it; a larger one streams through (the session sees its head, tail and size).
HOLD_BYTES = 1 << 20
_HEAD = 4096
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_NOT_UPSTREAM = HOP_BY_HOP | {"host", "origin", "accept-encoding", TOKEN_HEADER, "cookie"}
_NOT_DOWNSTREAM = HOP_BY_HOP | {"content-encoding", "set-cookie"}


def upstream_headers(headers: Iterable[tuple[str, str]], **extra: str) -> dict[str, str]:
    """The client's request headers as the upstream gets them. `Authorization` and every MCP
    header pass untouched; bodies are asked for unencoded so the session reads what it passes."""
    out = {k: v for k, v in headers if k.lower() not in _NOT_UPSTREAM}
    out["accept-encoding"] = "identity"
    out.update(extra)
    return out


def downstream_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in headers if k.lower() not in _NOT_DOWNSTREAM}


# --- the proxy's own door ----------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Guard:
    """Who may talk to the proxy. Every refusal is a plain HTTP error that says why."""

    bind_host: str
    port: int
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    _hosts: frozenset[str] = field(init=False)
    _origins: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        names = {self.bind_host, "127.0.0.1", "localhost", "[::1]"}
        if self.bind_host in ("0.0.0.0", "::"):
            names = set()  # every interface: only what the user listed (and loopback) is safe
            names.update({"127.0.0.1", "localhost", "[::1]"})
        if ":" in self.bind_host and not self.bind_host.startswith("["):
            names.add(f"[{self.bind_host}]")
        hosts = {f"{n}:{self.port}" for n in names} | set(self.allowed_hosts)
        if self.port == 80:
            hosts |= names
        self._hosts = frozenset(h.lower() for h in hosts)
        origins = {f"http://{h}" for h in self._hosts} | set(self.allowed_origins)
        self._origins = frozenset(o.lower().rstrip("/") for o in origins)

    def refuse(self, headers: Any) -> Response | None:
        """None when the request may pass, else the response that refuses it."""
        host = (headers.get("host") or "").lower()
        if host not in self._hosts:
            return _refusal(421, f"Host {host!r} is not this proxy (DNS rebinding protection)")
        origin = headers.get("origin")
        if origin is not None and origin.lower().rstrip("/") not in self._origins:
            return _refusal(
                403,
                f"Origin {origin!r} is not allowed (DNS rebinding protection; "
                "add it with --allow-origin)",
            )
        if self.token is not None:
            given = headers.get(TOKEN_HEADER) or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                why = "missing" if not given else "wrong"
                return _refusal(401, f"{why} proxy token (header X-MCP-Defense-Token)")
        return None


def _refusal(status: int, message: str) -> Response:
    return JSONResponse({"error": f"mcp-defense: {message}"}, status_code=status)


def upstream_parts(url: str) -> tuple[str, str]:
    """(origin, path) of an upstream URL; the proxy serves the same path."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise ValueError(f"upstream {url!r}: expected an http:// or https:// URL")
    return f"{u.scheme}://{u.netloc}", u.path or "/"


# --- Server-Sent Events --------------------------------------------------------------------------


def sse_event(data: bytes, event: str = "message") -> bytes:
    """One SSE event carrying one JSON-RPC message (a message is one line: no escaping)."""
    return b"event: " + event.encode() + b"\ndata: " + data.rstrip(b"\n") + b"\n\n"


@dataclass(slots=True)
class Whole:
    """A complete SSE event, held: `raw` is its exact bytes (blank line included)."""

    raw: bytes
    event: str
    data: bytes | None  # None: the event carried no data field


@dataclass(slots=True)
class Part:
    """Bytes of a large event, passed through as they arrived."""

    raw: bytes


@dataclass(slots=True)
class Ended:
    """The end of a large event that was streamed: what the session needs of it."""

    event: str
    streamed: Streamed


SSEPiece = Whole | Part | Ended


class SSEReader:
    """Incremental `text/event-stream` reader that never changes a byte it passes.

    Events up to `hold` bytes come out `Whole`; a larger one comes out as `Part`s as its
    bytes arrive and an `Ended` once its blank line does. Lines end in LF, CRLF or CR.
    """

    def __init__(self, hold: int = HOLD_BYTES) -> None:
        self.hold = hold
        self._buf = bytearray()
        self._raw = bytearray()  # raw bytes of the current event not yet passed on
        self._event = ""
        self._data: list[bytes] = []
        self._has_data = False
        self._streaming = False
        self._in_data_line = False  # streaming: inside a data line whose end has not come
        self._size = 0
        self._head = bytearray()
        self._tail = bytearray()
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[SSEPiece]:
        out: list[SSEPiece] = []
        buf = self._buf
        buf += chunk
        pos = 0
        n = len(buf)
        while pos < n:
            if self._skip_lf:
                self._skip_lf = False
                if buf[pos] == 0x0A:  # the LF of a CRLF split between two chunks
                    if self._raw or self._streaming or self._in_data_line:
                        self._pass(out, b"\n")
                    else:  # the CR ended an event: its LF follows the event out
                        out.append(Part(b"\n"))
                    pos += 1
                    continue
            lf = buf.find(b"\n", pos)
            cr = buf.find(b"\r", pos, lf if lf >= 0 else n)
            end = cr if cr >= 0 else lf
            if end < 0:
                partial = buf[pos:n]
                named = self._in_data_line or len(partial) >= 8 or b":" in partial
                if named and (self._in_data_line or (n - pos) + len(self._raw) > self.hold):
                    self._stream_partial(out, bytes(buf[pos:]))
                    pos = n
                break
            line = bytes(buf[pos:end])
            term = bytes(buf[end : end + 1])
            pos = end + 1
            if term == b"\r":
                if pos < n:
                    if buf[pos] == 0x0A:
                        term = b"\r\n"
                        pos += 1
                else:
                    self._skip_lf = True
            self._line(out, line, bytes(term))
        del buf[:pos]
        return out

    def close(self) -> list[SSEPiece]:
        """End of stream. An unterminated event is dropped, as the SSE standard says; only
        what was already streamed of it reaches the client."""
        out: list[SSEPiece] = []
        if self._streaming:
            out.append(Ended(self._event, self._streamed()))
        self._reset()
        self._buf.clear()
        return out

    # --- internals ---

    def _line(self, out: list[SSEPiece], line: bytes, term: bytes) -> None:
        if self._in_data_line:  # the rest of a streamed data line
            self._in_data_line = False
            self._note(line)
            self._pass(out, line + term)
            return
        if not line:  # blank line: the event is complete
            if self._streaming:
                self._pass(out, term)
                out.append(Ended(self._event, self._streamed()))
            elif self._raw or line:
                raw = bytes(self._raw) + term
                data = b"\n".join(self._data) if self._has_data else None
                out.append(Whole(raw, self._event or "message", data))
            else:
                out.append(Part(term))  # a stray blank line: pass it on
            self._reset()
            return
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            if self._streaming:
                if self._has_data:
                    self._note(b"\n")
                self._note(value)
            else:
                self._data.append(value)
            self._has_data = True
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        if self._streaming:
            self._pass(out, line + term)
        else:
            self._raw += line
            self._raw += term
            if len(self._raw) > self.hold:
                self._begin_streaming(out)

    def _stream_partial(self, out: list[SSEPiece], part: bytes) -> None:
        """A line longer than `hold` (or the continuation of one): pass it as it comes."""
        if not self._in_data_line:
            if not part.startswith(b"data:"):
                if not self._streaming:
                    self._begin_streaming(out)
                self._pass(out, part)
                self._in_data_line = True  # a huge non-data line: passed, not kept
                return
            if not self._streaming:
                self._begin_streaming(out)
            if self._has_data:
                self._note(b"\n")
            self._has_data = True
            value = part[5:]
            value = value[1:] if value.startswith(b" ") else value
            self._note(value)
            self._pass(out, part)
            self._in_data_line = True
            return
        self._note(part)
        self._pass(out, part)

    def _begin_streaming(self, out: list[SSEPiece]) -> None:
        self._streaming = True
        for i, d in enumerate(self._data):
            if i:
                self._note(b"\n")
            self._note(d)
        self._data = []
        if self._raw:
            out.append(Part(bytes(self._raw)))
            self._raw.clear()

    def _note(self, data: bytes) -> None:
        self._size += len(data)
        if len(self._head) < _HEAD:
            self._head += data[: _HEAD - len(self._head)]
        self._tail += data[-_HEAD:]
        if len(self._tail) > 2 * _HEAD:
            del self._tail[:-_HEAD]

    def _pass(self, out: list[SSEPiece], raw: bytes) -> None:
        if self._streaming or self._in_data_line:
            out.append(Part(raw))
        else:
            self._raw += raw

    def _streamed(self) -> Streamed:
        return Streamed(self._size, bytes(self._head), bytes(self._tail[-_HEAD:]))

    def _reset(self) -> None:
        self._raw = bytearray()
        self._event = ""
        self._data = []
        self._has_data = False
        self._streaming = False
        self._in_data_line = False
        self._size = 0
        self._head = bytearray()
        self._tail = bytearray()


class BodyTap:
    """A JSON response body on its way to the client: held whole up to `hold` bytes (so the
    session sees it first), streamed past that with only its head and tail kept."""

    def __init__(self, hold: int = HOLD_BYTES) -> None:
        self.hold = hold
        self.held = bytearray()
        self.streaming = False
        self.size = 0
        self._head = bytearray()
        self._tail = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to pass on now (empty while holding)."""
        self.size += len(chunk)
        if not self.streaming:
            self.held += chunk
            if len(self.held) <= self.hold:
                return b""
            self.streaming = True
            data, self.held = bytes(self.held), bytearray()
            self._head += data[:_HEAD]
            self._tail += data[-_HEAD:]
            return data
        if len(self._tail) > 2 * _HEAD:
            del self._tail[:-_HEAD]
        self._tail += chunk[-_HEAD:]
        return chunk

    def streamed(self) -> Streamed:
        return Streamed(self.size, bytes(self._head), bytes(self._tail[-_HEAD:]))


# --- sessions ------------------------------------------------------------------------------------


@dataclass
class HubConfig:
    """What every session of one HTTP proxy shares."""

    archetype: str
    get_table: Callable[[], TableLike]
    upstream: str
    transport: str
    agent_id: str = "unknown"
    observe: bool = False
    recorder: Recorder = field(default_factory=Recorder)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    learning: LearningState | None = None
    approvals: Any = None  # proxy.webapproval.Approvals, or None: require_approval is a deny
    pins: PinStore | None = None


@dataclass
class HubSession:
    """One client's session: its ProxySession and the lock that serialises its use."""

    key: str
    session: ProxySession
    killed: str = ""


class SessionHub:
    """The live sessions of one proxy, by key (Mcp-Session-Id, legacy session, or ephemeral)."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.sessions: dict[str, HubSession] = {}
        # Tool annotations are facts about the server, not the connection: every session of
        # this upstream learns from every tools/list.
        self.annotations: dict[str, dict[str, Any]] = {}
        self.definitions: dict[str, ToolDefinition] = {}
        # Tasks created by requests that carry no session (2026-07-28): a later request
        # fetches them. A session the upstream names gets tasks of its own (`adopt`).
        self.sessionless_tasks = Tasks(shared=True)

    def new(self, key: str | None = None) -> HubSession:
        c = self.config
        sid = f"ses_{uuid.uuid4().hex[:16]}"
        session = ProxySession(
            archetype=c.archetype,
            get_table=c.get_table,
            agent_id=c.agent_id,
            session_id=sid,
            observe=c.observe,
            approval=c.approvals is not None,
            recorder=c.recorder,
            max_message_bytes=c.max_message_bytes,
            learning=c.learning,
            annotations=self.annotations,
            definitions=self.definitions,
            pins=c.pins,
            tasks=self.sessionless_tasks if key is None else Tasks(),
        )
        hs = HubSession(key or sid, session)
        if c.recorder.active:
            table: Any = None
            try:
                table = c.get_table()
            except Exception:  # noqa: BLE001 - reporting only
                pass
            c.recorder.emit(
                SessionStart(
                    session_id=sid,
                    agent_id=c.agent_id,
                    archetype=c.archetype,
                    policy_version=session.table_version(),
                    variables={
                        str(k): str(v) for k, v in (getattr(table, "variables", {}) or {}).items()
                    },
                    upstream=c.upstream,
                    transport=c.transport,
                    observe=c.observe,
                )
            )
        return hs

    def get(self, key: str | None) -> HubSession | None:
        return self.sessions.get(key) if key else None

    def adopt(self, hs: HubSession, key: str) -> None:
        """The upstream named the session (Mcp-Session-Id, legacy endpoint): remember it."""
        if hs.key in self.sessions and self.sessions[hs.key] is hs:
            del self.sessions[hs.key]
        hs.key = key
        self.sessions[key] = hs
        if hs.session.tasks is self.sessionless_tasks:
            hs.session.tasks = Tasks()

    def end(self, key: str) -> None:
        self.sessions.pop(key, None)

    async def run(
        self,
        hs: HubSession,
        actions: list[ProxyAction],
        emit: Callable[[ProxyAction], Any],
        ask: Callable[[AskApproval], Awaitable[tuple[bool, str]]] | None = None,
    ) -> None:
        """Carry out a session's actions in order. Approvals are awaited here (in the task of
        the one request they hold, never blocking another) and their outcome carried out in
        turn; a kill ends the session. `emit` gets ToServer and ToClient actions; `ask`, when
        given, asks instead of the approval page (MCP elicitation)."""
        queue = list(actions)
        while queue:
            a = queue.pop(0)
            if isinstance(a, AskApproval):
                if ask is not None:
                    approved, reason = await ask(a)
                    queue.extend(hs.session.approval_answered(a.ticket, approved, reason))
                else:
                    queue.extend(await self._ask(hs, a))
            elif isinstance(a, Kill):
                self._kill(hs, a)
            elif isinstance(a, ToServer | ToClient):
                r = emit(a)
                if asyncio.iscoroutine(r):
                    await r

    async def _ask(self, hs: HubSession, a: AskApproval) -> list[ProxyAction]:
        approvals = self.config.approvals
        if approvals is None:  # pragma: no cover - the session asks only when approval is on
            return hs.session.approval_answered(a.ticket, False, "no one to ask")
        try:
            approved, reason = await approvals.ask(hs.session.session_id, a)
        except Exception as e:  # noqa: BLE001 - an approval path that fails rejects
            approved, reason = False, f"approval failed ({e}): {a.decision.reason}"
        return hs.session.approval_answered(a.ticket, approved, reason)

    def _kill(self, hs: HubSession, k: Kill) -> None:
        """An HTTP upstream is not our process: a kill ends this session (every later request
        in it fails) and is recorded, so the security team sees it."""
        why = f"session ended by policy: {k.rule}: {k.reason}"
        hs.killed = why
        hs.session.server_gone(why)
        if self.config.recorder.active:
            self.config.recorder.emit(
                KillEvent(
                    server_pid=0,
                    rule=k.rule,
                    reason=k.reason,
                    correlation_ids=list(k.correlation_ids),
                    signal="none: session ended",
                )
            )


@dataclass
class Outbox:
    """What a session's actions for one request say to send, in order: bytes for the
    upstream (`forward`) and answers for the client (`replies`). Pass it as `emit`."""

    forward: list[ToServer] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)

    def __call__(self, a: ProxyAction) -> None:
        if isinstance(a, ToServer):
            self.forward.append(a)
        elif isinstance(a, ToClient):
            self.replies.append(a.data)


def relay_sse_piece(piece: SSEPiece, session: ProxySession, limit: int) -> list[bytes]:
    """The bytes to send the client for one piece of an upstream SSE stream, each server
    message through the session (the exact bytes when it passes them unchanged)."""
    if isinstance(piece, Part):
        return [piece.raw]
    if isinstance(piece, Ended):
        if piece.streamed.size > limit:
            raise ConnectionAbortedError("mcp-defense: server message over the limit")
        session.server_message(piece.streamed)
        return []
    if piece.data is None or piece.event != "message" or not piece.data.strip():
        return [piece.raw]  # priming events, pings, retry hints: not messages
    out: list[bytes] = []
    for action in session.server_message(piece.data):
        if isinstance(action, ToClient):
            out.append(piece.raw if action.data == piece.data else sse_event(action.data))
    return out
