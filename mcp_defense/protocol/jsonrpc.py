"""The one place that frames, parses and classifies JSON-RPC 2.0 messages.

Framing is a security boundary: whatever this module accepts is what a policy decides on,
and the raw bytes it accepted are what the peer receives. So it is strict where a parser
differential could let a call be decided on one reading and executed on another (invalid
UTF-8, duplicate object keys, NaN/Infinity, a BOM, trailing data are refused) and bounded
where an input could exhaust the proxy (a per-line byte ceiling that is enforced while
reading, a nesting-depth ceiling checked without recursion before `json.loads`).

Transport-agnostic: `LineFramer` is fed bytes by whoever owns the stream (stdio pipes, an
HTTP body, a recorded transcript) and `parse_message` takes one message's bytes.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import accumulate
from typing import Any

# --- error codes -----------------------------------------------------------------------------
# Standard JSON-RPC 2.0 codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server-error range (-32000..-32099), documented in README/docs.
SERVER_CLOSED = -32000  # the server exited (or was killed) before answering; same as the MCP SDK
POLICY_DENIED = -32010  # the call was blocked by policy (deny, kill, or approval not granted)
MESSAGE_TOO_LARGE = -32011  # the line exceeded --max-message-bytes; it was discarded unread

# Client requests decided by policy: tools/call, and the requests that name a resource or
# render a prompt (a resources/read of file:///home/alice/.ssh/id_rsa is a read like any other).
DECIDED_METHODS = frozenset({"tools/call", "resources/read", "resources/subscribe", "prompts/get"})
# Server→client requests that policy decides (an untrusted server driving the agent's model or
# questioning its user is a prompt-injection channel), standalone or embedded in a 2026-07-28
# `input_required` result. Decided as a tool named after the method, like resources/read.
SERVER_DECIDED_METHODS = frozenset({"sampling/createMessage", "elicitation/create"})
# Every client→server request method of both MCP eras (handshake revisions up to 2025-11-25,
# and 2026-07-28). A request for any other method is decided like a call to a tool of that
# name, so that it is an event and the policy can refuse it (`unknown_method` in the pack).
KNOWN_CLIENT_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "tasks/get",
        "tasks/result",
        "tasks/list",
        "tasks/cancel",
        "tasks/update",
        "subscriptions/listen",
    }
)
# Requests about one task (2025-11-25 core; 2026-07-28 `io.modelcontextprotocol/tasks`
# extension): forwarded only for a task an allowed call of the same session created.
TASK_METHODS = frozenset({"tasks/get", "tasks/result", "tasks/cancel", "tasks/update"})
TASK_STATUSES = frozenset({"working", "input_required", "completed", "failed", "cancelled"})
TERMINAL_TASK_STATUSES = frozenset({"completed", "failed", "cancelled"})

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_DEPTH = 128
_HEAD_BYTES = 4096  # how much of an over-size or unparseable line is kept to find its id


# --- framing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Oversize:
    """A line longer than the ceiling. Its bytes were discarded as they arrived (only `head`
    is kept, to recover the id for the error answer); the stream stays in sync."""

    size: int
    head: bytes


@dataclass(frozen=True, slots=True)
class Streamed:
    """A message too large to hold, already passed through in pieces (HTTP transports):
    only its size and its first and last bytes were kept, which is where its id is."""

    size: int
    head: bytes
    tail: bytes

    @property
    def sample(self) -> bytes:
        """Head and tail joined: `sniff_id` and `response_info` read only the two ends."""
        return self.head + b" " + self.tail


class LineFramer:
    """Splits a byte stream into newline-terminated messages, never holding more than
    `max_bytes` of one line (plus one read chunk) in memory.

    `feed` returns complete lines *including* their `\\n` (so they can be forwarded as-is)
    or `Oversize` markers; `finish` returns a trailing unterminated line at end of stream.
    Each byte is scanned for a newline once, so a 16 MiB line costs O(16 MiB), not O(n²).
    """

    __slots__ = ("max_bytes", "_parts", "partial", "_discarding", "_head")

    def __init__(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._parts: list[bytes] = []
        # Bytes of the current unterminated line seen so far, held or discarded. Readers
        # check it for a fast path (0 and a chunk that is exactly one line: no feed needed)
        # and to switch to large reads while a large line streams in.
        self.partial = 0
        self._discarding = False
        self._head = b""

    @property
    def buffered(self) -> int:
        """Bytes of a partial line currently held (0 while discarding)."""
        return 0 if self._discarding else self.partial

    def feed(self, chunk: bytes) -> list[bytes | Oversize]:
        out: list[bytes | Oversize] = []
        start = 0
        n = len(chunk)
        find = chunk.find
        while start < n:
            nl = find(b"\n", start)
            if nl < 0:
                self._append(chunk, start, n)
                break
            line_len = self.partial + (nl - start)
            if self._discarding or line_len > self.max_bytes:
                head = (
                    self._grow_head(chunk, start, nl)
                    if self._discarding
                    else self._take_head(chunk, start, nl)
                )
                out.append(Oversize(line_len, head))
            elif not self._parts:
                out.append(chunk[start : nl + 1] if (start or nl + 1 != n) else chunk)
            else:
                self._parts.append(chunk[start : nl + 1])
                out.append(b"".join(self._parts))
            self._parts = []
            self.partial = 0
            self._discarding = False
            self._head = b""
            start = nl + 1
        return out

    def finish(self) -> bytes | Oversize | None:
        """End of stream: the unterminated last line, if any (a peer may omit the final \\n)."""
        if self._discarding:
            result: bytes | Oversize | None = Oversize(self.partial, self._head)
        elif self._parts:
            result = b"".join(self._parts)
        else:
            result = None
        self._parts = []
        self.partial = 0
        self._discarding = False
        self._head = b""
        return result

    def _take_head(self, chunk: bytes, start: int, end: int) -> bytes:
        head = b""
        for part in self._parts:
            head += part[: _HEAD_BYTES - len(head)]
            if len(head) >= _HEAD_BYTES:
                return head
        return head + chunk[start : min(end, start + _HEAD_BYTES - len(head))]

    def _grow_head(self, chunk: bytes, start: int, end: int) -> bytes:
        head = self._head
        if len(head) < _HEAD_BYTES:
            head += chunk[start : min(end, start + _HEAD_BYTES - len(head))]
        return head

    def _append(self, chunk: bytes, start: int, end: int) -> None:
        piece_len = end - start
        if self._discarding:
            self._head = self._grow_head(chunk, start, end)
            self.partial += piece_len
            return
        if self.partial + piece_len > self.max_bytes:
            self._head = self._take_head(chunk, start, end)
            self._parts = []
            self._discarding = True
            self.partial += piece_len
            return
        self._parts.append(chunk if start == 0 and end == len(chunk) else chunk[start:end])
        self.partial += piece_len


# --- parsing -----------------------------------------------------------------------------------


class Kind(StrEnum):
    REQUEST = "request"
    NOTIFICATION = "notification"
    RESPONSE = "response"
    ERROR = "error"
    BATCH = "batch"
    INVALID = "invalid"


@dataclass(slots=True)
class Message:
    """One classified message. For INVALID, `error_code`/`error_message` say why and `id` is
    the request id when one could be recovered (so the sender can be answered)."""

    kind: Kind
    obj: Any = None
    id: Any = None
    method: str | None = None
    params: Any = None
    elements: Sequence[Message] = ()  # BATCH only
    error_code: int = 0
    error_message: str = ""

    @property
    def has_id(self) -> bool:
        return self.id is not None


class _DuplicateKey(ValueError):
    pass


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(f"duplicate object key {k!r}")
            seen.add(k)
    return d


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_strict_object, parse_constant=_no_constant)
_scan_once = _DECODER.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__
_JSON_WS = " \t\n\r"  # JSON's whitespace; str.strip() would also accept \x0b, \x1c, U+3000...


def loads_strict(text: str) -> Any:
    """`json.loads` minus its Python-level wrapper, and stricter: duplicate keys, NaN and
    Infinity are errors (ValueError), and only JSON whitespace may surround the value."""
    start = 0
    if text[:1] in (" ", "\t", "\n", "\r"):
        start = len(text) - len(text.lstrip(_JSON_WS))
    try:
        obj, end = _scan_once(text, start)
    except StopIteration as e:
        raise json.JSONDecodeError("Expecting value", text, e.value) from None
    if end != len(text) and text[end:].strip(_JSON_WS):
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


# Bracket bytes -> +1 / -1 (as signed chars), everything else deleted.
_DEPTH_TABLE = bytes(range(256)).translate(bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff"))
_NON_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(data: bytes) -> int:
    """Maximum bracket nesting of a JSON text, ignoring brackets inside strings.

    No recursion and no per-byte Python loop: escaped backslashes and quotes are removed,
    string bodies dropped by splitting on quotes, and the running depth is a C-level
    `accumulate` over the remaining bracket bytes. Exact for valid JSON; for invalid JSON it
    may over- or under-count, which only changes which error is reported.
    """
    s = data
    if b"\\" in s:
        s = s.replace(b"\\\\", b"").replace(b'\\"', b"")
    if b'"' in s:
        s = b"".join(s.split(b'"')[0::2])
    brackets = s.translate(_DEPTH_TABLE, _NON_BRACKETS)
    if not brackets:
        return 0
    return max(accumulate(array("b", brackets)))


def exceeds_depth(data: bytes, max_depth: int) -> bool:
    """Cheap first: fewer opening brackets than the limit anywhere means it cannot exceed it."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    return nesting_depth(data) > max_depth


def _valid_id(v: Any) -> bool:
    # MCP: string or integer; JSON-RPC forbids bool/fractional ids; null only for errors.
    return (type(v) is int) or (type(v) is str)


class JsonFailure(ValueError):
    """A line that is not strict JSON: carries the JSON-RPC error code and the reason."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_json(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Strict UTF-8, a depth guard that does not recurse, strict JSON (no duplicate keys, no
    NaN): the one way any runtime turns a line into a value. Raises JsonFailure."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JsonFailure(PARSE_ERROR, f"invalid UTF-8 at byte {e.start}") from None
    if exceeds_depth(data, max_depth):
        raise JsonFailure(PARSE_ERROR, f"JSON nesting deeper than {max_depth}")
    try:
        return loads_strict(text)
    except _DuplicateKey as e:
        raise JsonFailure(INVALID_REQUEST, str(e)) from None
    except RecursionError:  # belt and braces: the depth pre-scan should have caught it
        raise JsonFailure(PARSE_ERROR, "JSON nested too deeply") from None
    except ValueError as e:
        raise JsonFailure(PARSE_ERROR, f"invalid JSON: {e}") from None


def parse_message(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Message:
    """Decode (strict UTF-8), parse (depth-guarded, strict JSON) and classify one message.

    Never raises for bad input: the result is a Message of kind INVALID carrying a JSON-RPC
    error code and, when recoverable, the id to answer.
    """
    try:
        obj = decode_json(data, max_depth)
    except JsonFailure as e:
        return _invalid(e.code, e.message, sniff_id(data))
    return classify(obj, max_depth)


def classify(obj: Any, max_depth: int = DEFAULT_MAX_DEPTH) -> Message:
    """Classify an already-parsed JSON value (used for batch elements and by replay)."""
    if type(obj) is dict:
        return _classify_object(obj)
    if type(obj) is list:
        if not obj:
            return _invalid(INVALID_REQUEST, "empty batch", None)
        return Message(Kind.BATCH, obj=obj, elements=[_classify_element(e) for e in obj])
    return _invalid(INVALID_REQUEST, "message is not a JSON object or array", None)


def _classify_element(obj: Any) -> Message:
    if type(obj) is dict:
        return _classify_object(obj)
    return _invalid(INVALID_REQUEST, "batch element is not a JSON object", None)


def _classify_object(obj: dict[str, Any]) -> Message:
    rid = obj.get("id")
    known_id = rid if _valid_id(rid) else None
    if obj.get("jsonrpc") != "2.0":
        return _invalid(INVALID_REQUEST, 'missing or wrong "jsonrpc": "2.0"', known_id)
    if "method" in obj:
        method = obj["method"]
        if type(method) is not str:
            return _invalid(INVALID_REQUEST, '"method" must be a string', known_id)
        if "result" in obj or "error" in obj:
            return _invalid(INVALID_REQUEST, "request carries result/error", known_id)
        params = obj.get("params")
        if params is not None and type(params) not in (dict, list):
            return _invalid(INVALID_PARAMS, '"params" must be an object or array', known_id)
        if "id" not in obj:
            return Message(Kind.NOTIFICATION, obj=obj, method=method, params=params)
        if known_id is None:
            return _invalid(INVALID_REQUEST, '"id" must be a string or an integer', None)
        return Message(Kind.REQUEST, obj=obj, id=rid, method=method, params=params)
    if "id" not in obj:
        return _invalid(INVALID_REQUEST, "neither a request nor a response", None)
    if rid is not None and known_id is None:
        return _invalid(INVALID_REQUEST, '"id" must be a string, an integer or null', None)
    has_result = "result" in obj
    has_error = "error" in obj
    if has_result == has_error:
        return _invalid(INVALID_REQUEST, "response needs exactly one of result/error", known_id)
    if has_error:
        err = obj["error"]
        if type(err) is not dict or type(err.get("code")) is not int:
            return _invalid(INVALID_REQUEST, "malformed error object", known_id)
        return Message(Kind.ERROR, obj=obj, id=rid)
    return Message(Kind.RESPONSE, obj=obj, id=rid)


def _invalid(code: int, message: str, rid: Any) -> Message:
    return Message(Kind.INVALID, id=rid, error_code=code, error_message=message)


# --- cheap id recovery ---------------------------------------------------------------------------

_ID = rb'(-?[0-9]{1,18}|"(?:[^"\\\r\n]|\\.){0,256}")'
# `{"jsonrpc":"2.0","id":X,"<key>"` or `{"id":X,...` at the very start: necessarily top-level keys.
_HEAD = re.compile(
    rb'\A\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*'
    + _ID
    + rb'\s*(?:\}|,\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"(result|error|method)"|,)'
)
# `{"result":` / `{"error":` first (the TypeScript SDK's order: result, jsonrpc, id).
_HEAD_KIND = re.compile(rb'\A\s*\{\s*"(result|error|method)"\s*:')
# `,"id":X}` at the very end: the closing brace is necessarily the top-level one.
_TAIL_ID = re.compile(rb'[{,]\s*"id"\s*:\s*' + _ID + rb"\s*\}\s*\Z")
_TOOL_ERROR = re.compile(rb'"isError"\s*:\s*true')


def _id_value(raw: bytes) -> Any:
    if raw[:1] == b'"':
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return int(raw)


def _tail_id(data: bytes) -> Any:
    tail = data[-_HEAD_BYTES:] if len(data) > _HEAD_BYTES else data
    m = _TAIL_ID.search(tail.rstrip(b"\r\n"))
    return _id_value(m.group(1)) if m else None


def sniff_id(data: bytes) -> Any:
    """The top-level id of a message that cannot (or need not) be fully parsed, or None.

    Looks only at the first and last 4 KiB, and only where a match is necessarily the
    top-level key (first keys of the object, or the last one before its closing brace).
    Used to answer a refused request and to match responses without parsing them; it trusts
    the sender to write valid JSON, so a hostile server can at worst confuse bookkeeping.
    """
    m = _HEAD.match(data, 0, _HEAD_BYTES)
    if m is not None:
        return _id_value(m.group(1))
    return _tail_id(data)


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    id: Any
    is_error: bool  # a JSON-RPC error, or a tool result with isError: true


_SMALL = 16 * 1024


def response_info(data: bytes) -> ResponseInfo | None:
    """Id and error-ness of a server→client line, parsing it at most once (usually never).

    The id and whether it is a result or an error come from the head or tail of the line
    (where the MCP SDKs put them). A tool-level `isError: true` is looked for in the whole
    line when it is small (and confirmed by a parse), in the last 256 bytes when it is large
    (the SDKs serialize it last). Only lines whose shape is not recognised are parsed.
    Returns None for anything that is not a response.
    """
    m = _HEAD.match(data, 0, _HEAD_BYTES)
    kind = m.group(2) if m is not None else None
    if kind is not None:
        rid = _id_value(m.group(1))  # type: ignore[union-attr]
    else:
        k = _HEAD_KIND.match(data, 0, 64)
        kind = k.group(1) if k is not None else None
        rid = _tail_id(data) if kind is not None else None
    if kind is not None and rid is not None:
        if kind == b"method":
            return None
        if kind == b"error":
            return ResponseInfo(rid, True)
        if len(data) > _SMALL:
            return ResponseInfo(rid, _TOOL_ERROR.search(data, max(0, len(data) - 256)) is not None)
        if _TOOL_ERROR.search(data) is None:
            return ResponseInfo(rid, False)
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if type(obj) is not dict or "method" in obj or not _valid_id(obj.get("id")):
        return None
    if "error" in obj:
        return ResponseInfo(obj["id"], True)
    result = obj.get("result")
    return ResponseInfo(obj["id"], type(result) is dict and result.get("isError") is True)


# --- building messages -------------------------------------------------------------------------

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def error_response(rid: Any, code: int, message: str, data: Any = None) -> bytes:
    """One JSON-RPC error response line (with `\\n`). `rid` None gives `"id": null`."""
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return encode({"jsonrpc": "2.0", "id": rid, "error": err})


def encode(obj: Any) -> bytes:
    """Serialize one message as an ASCII line (any string, even a lone surrogate, is escaped)."""
    return (_dumps(obj) + "\n").encode("ascii")
