"""The proxy session: every policy decision of one MCP connection, without any I/O.

A transport (stdio today; Streamable HTTP and legacy SSE next) owns the bytes, the process
and the waiting. It feeds the session what arrives and carries out what comes back:

    actions = session.client_message(raw)      # one framed client message (bytes or Oversize)
    actions = session.server_message(raw)      # one framed server message
    actions = session.approval_answered(ticket, approved, reason)
    actions = session.server_write_failed(request_id)   # the server stopped taking input
    actions = session.server_gone(why)         # the server exited: fail what is pending

Each call returns a list of actions, to be carried out in order:

* `ToServer(data, request_id)`: write these exact bytes (one message, newline added by the
  transport if its framing needs one) to the server.
* `ToClient(data, request_id)`: write these bytes to the client; `request_id` is the client
  request they answer (None when unsolicited or unknown), so an HTTP transport can route
  the bytes to the stream of that request.
* `AskApproval(ticket, ...)`: a human must decide. The transport asks however it likes
  (a thread running `proxy.approval.Approver.ask`, an asyncio task, a web prompt) and later
  calls `approval_answered(ticket, ...)`. Meanwhile every other message keeps flowing: the
  held request (or batch) waits alone.
* `Kill(rule, reason, correlation_ids)`: a `kill` rule fired; kill the server's whole tree.

Events (tool_call, tool_result, framing_refused) go to the recorder given to the session,
as they happen; the recorder is the transport's sink. Flow hooks (`call_opened`,
`call_closed`) are called as requests are forwarded and closed.

The session is not thread-safe and never blocks: drive it from one thread at a time (a lock
in a threaded transport; one event loop in asyncio). Several sessions live side by side in
one process; they share nothing but what is passed in (table getter, recorder, approver).

Invariants: a decided request reaches the server only if the table allows it (or observe
mode); a batch is forwarded only if every element is valid and allowed, else every element
with an id is answered with an error; the bytes forwarded are the bytes received.
"""

from __future__ import annotations

import heapq
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mcp_defense.events.model import (
    FramingEvent,
    ResponseDecided,
    SubscriptionEvent,
    TaskEvent,
    ToolCallEvent,
    ToolChanged,
    ToolResultEvent,
    ToolsHidden,
    new_correlation_id,
)
from mcp_defense.events.record import (
    RECORD_REQUIRED_REASON,
    RECORD_REQUIRED_RULE,
    Recorder,
    iso_fast,
    now_iso_fast,
    printable,
)
from mcp_defense.policy.extract.results import redact_result, result_facts
from mcp_defense.policy.extract.secrets import may_contain_secrets
from mcp_defense.policy.facts import Action, Decision, ResultFacts, ToolCall, ToolDefinition
from mcp_defense.policy.table import LearningState
from mcp_defense.protocol.calls import (
    COMPLETE,
    build_call,
    completion_file_uri,
    is_decided,
    near_decided_method,
)
from mcp_defense.protocol.jsonrpc import (
    DECIDED_METHODS,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_MESSAGE_BYTES,
    INVALID_PARAMS,
    INVALID_REQUEST,
    KNOWN_CLIENT_METHODS,
    MESSAGE_TOO_LARGE,
    METHOD_NOT_FOUND,
    POLICY_DENIED,
    SERVER_CLOSED,
    SERVER_DECIDED_METHODS,
    TASK_METHODS,
    TASK_STATUSES,
    TERMINAL_TASK_STATUSES,
    Kind,
    Message,
    Oversize,
    Streamed,
    encode,
    error_response,
    parse_message,
    response_info,
    sniff_id,
)
from mcp_defense.proxy.pins import CHANGED, PinError, PinStore


class TableLike(Protocol):
    """What the session needs from a compiled DecisionTable."""

    @property
    def version(self) -> str: ...

    def decide(self, call: ToolCall) -> Decision: ...


class CallHooks(Protocol):
    """What the session tells a flow correlator about each forwarded decided request."""

    def call_opened(self, correlation_id: str) -> None: ...

    def call_closed(self, correlation_id: str) -> None: ...


# --- actions ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ToServer:
    data: bytes
    request_id: Any = None


@dataclass(slots=True)
class ToClient:
    data: bytes
    request_id: Any = None


@dataclass(slots=True)
class AskApproval:
    ticket: int
    tool: str
    arguments: Any
    decision: Decision
    correlation_id: str


@dataclass(slots=True)
class Kill:
    rule: str
    reason: str
    correlation_ids: tuple[str, ...] = ()


ProxyAction = ToServer | ToClient | AskApproval | Kill


# --- state -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    method: str
    correlation_id: str
    t0: float
    paged: bool = False  # a tools/list asking for a later page (its answer is not the whole list)
    call: ToolCall | None = None  # set when response rules decide this request's result
    origin: ToolCall | None = None  # the decided call this request is (it may create a task)
    task: str = ""  # tasks/*: the task it is about (created by an allowed call of this session)


@dataclass(slots=True)
class _Task:
    """A task an allowed call created: its result is that call's result."""

    task_id: str
    call: ToolCall
    correlation_id: str
    t0: float
    deadline: float  # when its ttl passes (perf counter); inf without a ttl
    status: str = "working"
    ended: bool = False  # terminal status seen (or expired): the flow window is closing


@dataclass(slots=True)
class _Outcome:
    """One decided request: what policy said, and (once settled) what to do."""

    correlation_id: str
    forward: bool = False
    error: dict[str, Any] | None = None  # JSON-RPC error object when not forwarded
    kill: Decision | None = None
    # Set while an approval is outstanding (and kept to record the event once answered).
    call: ToolCall | None = None
    decision: Decision | None = None
    request_id: Any = None
    ticket: int = 0
    eval_ms: float = 0.0  # time spent in table.decide (the decision event carries it)
    hold: bool = False  # response rules will decide the result: keep the call for them


@dataclass(slots=True)
class _Held:
    """A request, or a batch, waiting for one or more approvals."""

    line: bytes
    msg: Message
    outcomes: dict[int, _Outcome]  # element index (0 for a single request) → outcome
    errors: dict[int, dict[str, Any]] = field(default_factory=dict)
    waiting: set[int] = field(default_factory=set)  # tickets not answered yet
    cancelled: bool = False
    from_server: bool = False  # a server→client request: approved, it goes to the client


@dataclass(slots=True)
class Tasks:
    """The tasks allowed calls created (task id → task), with their ttl deadlines (a heap,
    so an abandoned task's window closes when it expires). One session's by default; the
    sessionless requests of one HTTP proxy share one (2026-07-28 has no session to scope a
    task to, and a task is fetched by a later request)."""

    by_id: dict[str, _Task] = field(default_factory=dict)
    deadlines: list[tuple[float, str]] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)  # forgotten task ids (a refusal says why)
    shared: bool = False


class ProxySession:
    """One MCP connection's decisions. `get_table` is called once per decision, so a hot
    reload takes effect at the next call and a call in flight finishes under its table."""

    def __init__(
        self,
        *,
        archetype: str,
        get_table: Callable[[], TableLike],
        agent_id: str = "unknown",
        session_id: str | None = None,
        observe: bool = False,
        approval: bool = False,
        recorder: Recorder | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        learning: LearningState | None = None,
        flows: CallHooks | None = None,
        warn: Callable[[str], None] | None = None,
        annotations: dict[str, dict[str, Any]] | None = None,
        definitions: dict[str, ToolDefinition] | None = None,
        pins: PinStore | None = None,
        tasks: Tasks | None = None,
    ) -> None:
        self.archetype = archetype
        self.get_table = get_table
        self.agent_id = agent_id
        self.session_id = session_id or f"ses_{uuid.uuid4().hex[:16]}"
        self.observe = observe
        self.approval = approval  # False: require_approval is a rejection (no one to ask)
        self.recorder = recorder or Recorder()
        self.max_message_bytes = max_message_bytes
        self.max_depth = max_depth
        self.learning = learning
        self.flows = flows
        self.warn = warn or _stderr
        self.closed_reason = ""  # set once the server is gone: new requests fail with it
        # What the client declared in `initialize` (handshake era): a transport may ask for
        # approval through MCP elicitation when the client can show it to its user.
        self.client_capabilities: dict[str, Any] = {}
        self._pending: dict[Any, _Pending] = {}
        # Tool annotations learnt from tools/list: several sessions of one server may share them.
        self._annotations: dict[str, dict[str, Any]] = {} if annotations is None else annotations
        # Descriptions and pin status, also from tools/list (shared the same way).
        self._definitions: dict[str, ToolDefinition] = {} if definitions is None else definitions
        self.pins = pins
        self._held: dict[int, tuple[_Held, int]] = {}  # ticket → (held, element index)
        self._held_ids: dict[Any, _Held] = {}  # request id → held request (for cancellation)
        self._tickets = 0
        self._holding = 0  # pending requests whose result response rules decide
        self._rewritten: bytes | None = None  # a server message to send instead (tools/list)
        self.tasks = tasks if tasks is not None else Tasks()

    @property
    def pending(self) -> int:
        """Requests forwarded to the server and not answered yet."""
        return len(self._pending)

    @property
    def awaiting_approval(self) -> int:
        return len(self._held)

    def table_version(self) -> str:
        try:
            return str(self.get_table().version)
        except Exception:  # noqa: BLE001 - reporting only
            return ""

    # --- client -> server ----------------------------------------------------------------------

    def client_message(self, item: bytes | Oversize) -> list[ProxyAction]:
        if type(item) is Oversize:
            return self._refuse(
                "client->server",
                f"message of {item.size} bytes exceeds --max-message-bytes {self.max_message_bytes}",
                sniff_id(item.head),
                item.size,
                MESSAGE_TOO_LARGE,
            )
        line: bytes = item  # type: ignore[assignment]
        if line.isspace():
            return []  # blank keep-alive lines are not messages
        if self.tasks.deadlines:
            self._expire_tasks()
        msg = parse_message(line, self.max_depth)
        kind = msg.kind
        if kind is Kind.REQUEST:
            method = msg.method or ""
            if method in DECIDED_METHODS or (
                method == COMPLETE and completion_file_uri(msg.params) is not None
            ):
                return self._client_call(msg, line)
            near = near_decided_method(method)
            if near is not None:
                return self._refuse(
                    "client->server",
                    f"method {method!r} imitates {near!r}; refused (not forwarded undecided)",
                    msg.id,
                    len(line),
                    METHOD_NOT_FOUND,
                )
            if method not in KNOWN_CLIENT_METHODS:
                if type(msg.params) is not dict and msg.params is None:
                    msg = Message(msg.kind, msg.obj, msg.id, method, {})
                return self._client_call(msg, line)
            if self.closed_reason:
                return [self._error_to(msg.id, SERVER_CLOSED, self.closed_reason)]
            if method in TASK_METHODS:
                return self._task_request(msg, line)
            if method == "subscriptions/listen":
                return self._listen(msg, line)
            if method == "initialize" and type(msg.params) is dict:
                caps = msg.params.get("capabilities")
                self.client_capabilities = caps if type(caps) is dict else {}
            paged = type(msg.params) is dict and msg.params.get("cursor") is not None
            self._pending[msg.id] = _Pending(method, "", _perf(), paged)
            return [ToServer(line, msg.id)]
        if kind is Kind.NOTIFICATION:
            method = msg.method or ""
            if method == "tools/call" or near_decided_method(method) == "tools/call":
                # A notification cannot be answered; dropping it unanswered is the only safe choice.
                return self._refuse(
                    "client->server",
                    f"{method} sent as a notification (no id)",
                    None,
                    len(line),
                    0,
                    answer=False,
                )
            if method == "notifications/cancelled":
                self._cancel_held(msg.params)
            return [ToServer(line)]
        if kind is Kind.RESPONSE or kind is Kind.ERROR:
            return [ToServer(line)]  # the client answering a server request
        if kind is Kind.BATCH:
            return self._client_batch(msg, line)
        return self._refuse("client->server", msg.error_message, msg.id, len(line), msg.error_code)

    def _client_call(self, msg: Message, line: bytes) -> list[ProxyAction]:
        out = self._decide(msg)
        if out.ticket:
            held = _Held(line, msg, {0: out}, waiting={out.ticket})
            self._held[out.ticket] = (held, 0)
            self._held_ids[msg.id] = held
            return [self._ask(out)]
        return self._finish_single(msg, line, out)

    def _finish_single(self, msg: Message, line: bytes, out: _Outcome) -> list[ProxyAction]:
        if out.forward:
            if self.closed_reason:
                return self._fail_unsent(msg.id, out.correlation_id)
            self._pending[msg.id] = _Pending(
                msg.method or "",
                out.correlation_id,
                _perf(),
                call=out.call if out.hold else None,
                origin=out.call,
            )
            if out.hold:
                self._holding += 1
            if self.flows is not None:  # before the server can act on it
                self.flows.call_opened(out.correlation_id)
            return [ToServer(line, msg.id)]
        actions: list[ProxyAction] = [
            ToClient(encode({"jsonrpc": "2.0", "id": msg.id, "error": out.error}), msg.id)
        ]
        if out.kill is not None:
            actions.append(Kill(out.kill.rule, out.kill.reason, (out.correlation_id,)))
        return actions

    def _client_batch(self, msg: Message, line: bytes) -> list[ProxyAction]:
        """Forward the batch unchanged only if every element is valid and allowed."""
        errors: dict[int, dict[str, Any]] = {}
        outcomes: dict[int, _Outcome] = {}
        for i, el in enumerate(msg.elements):
            method = el.method or ""
            if el.kind is Kind.INVALID:
                errors[i] = {
                    "code": el.error_code,
                    "message": f"mcp-defense: batch element {i}: {el.error_message}",
                }
            elif el.kind is Kind.NOTIFICATION and (
                method == "tools/call" or near_decided_method(method) == "tools/call"
            ):
                errors[i] = {
                    "code": INVALID_REQUEST,
                    "message": f"mcp-defense: batch element {i}: tools/call without id",
                }
            elif el.kind is Kind.BATCH:
                errors[i] = {
                    "code": INVALID_REQUEST,
                    "message": f"mcp-defense: batch element {i}: nested batch",
                }
            elif el.kind is Kind.REQUEST and is_decided(method, el.params):
                outcomes[i] = self._decide(el)
            elif el.kind is Kind.REQUEST and method in (*TASK_METHODS, "subscriptions/listen"):
                errors[i] = {
                    "code": INVALID_REQUEST,
                    "message": f"mcp-defense: batch element {i}: {method} is not accepted in "
                    "a batch (send it alone)",
                }
            elif el.kind is Kind.REQUEST and near_decided_method(method) is not None:
                errors[i] = {
                    "code": METHOD_NOT_FOUND,
                    "message": f"mcp-defense: batch element {i}: method {method!r} imitates "
                    f"{near_decided_method(method)!r}",
                }
        asking = [i for i, o in outcomes.items() if o.ticket]
        held = _Held(line, msg, outcomes, errors)
        refused = [i for i, o in outcomes.items() if not o.ticket and not o.forward]
        first_refused = min([*errors, *refused], default=-1)
        if asking and first_refused < 0:
            actions: list[ProxyAction] = []
            for i in asking:
                out = outcomes[i]
                held.waiting.add(out.ticket)
                self._held[out.ticket] = (held, i)
                actions.append(self._ask(out))
            for el in msg.elements:
                if el.kind is Kind.REQUEST:
                    self._held_ids[el.id] = held
            return actions
        for i in asking:  # another element is refused: the batch is, so no one is asked
            self._settle(
                outcomes[i], False, f"approval not asked: batch element {first_refused} was refused"
            )
        return self._finish_batch(held)

    def _finish_batch(self, held: _Held) -> list[ProxyAction]:
        msg, errors = held.msg, held.errors
        kill: _Outcome | None = None
        for i, out in sorted(held.outcomes.items()):
            if not out.forward:
                errors[i] = out.error or {}
                if out.kill is not None and kill is None:
                    kill = out
        if not errors:
            if self.closed_reason:
                return [
                    a
                    for i, el in enumerate(msg.elements)
                    if el.kind is Kind.REQUEST
                    for a in self._fail_unsent(
                        el.id, held.outcomes[i].correlation_id if i in held.outcomes else ""
                    )
                ]
            now = _perf()
            for i, el in enumerate(msg.elements):
                if el.kind is Kind.REQUEST:
                    o = held.outcomes.get(i)
                    hold = o is not None and o.hold
                    self._pending[el.id] = _Pending(
                        el.method or "",
                        o.correlation_id if o is not None else "",
                        now,
                        call=o.call if o is not None and hold else None,
                        origin=o.call if o is not None else None,
                    )
                    self._holding += hold
            if self.flows is not None:
                for o in held.outcomes.values():
                    self.flows.call_opened(o.correlation_id)
            return [ToServer(held.line)]
        first = min(errors)
        answers = []
        for i, el in enumerate(msg.elements):
            if el.id is None or el.kind not in (Kind.REQUEST, Kind.INVALID):
                continue  # notifications and the client's own responses get no answer
            err = errors.get(i) or {
                "code": INVALID_REQUEST,
                "message": f"mcp-defense: batch refused because element {first} was refused "
                "(a batch is forwarded only if every element is allowed)",
            }
            answers.append({"jsonrpc": "2.0", "id": el.id, "error": err})
        if self.recorder.active:
            self.recorder.emit(
                FramingEvent(
                    direction="client->server",
                    reason=f"batch of {len(msg.elements)} refused: element {first}: "
                    f"{errors[first].get('message', '')}",
                    size=len(held.line),
                )
            )
        actions: list[ProxyAction] = []
        if answers:
            actions.append(ToClient(encode(answers)))
        if kill is not None and kill.kill is not None:
            actions.append(Kill(kill.kill.rule, kill.kill.reason, (kill.correlation_id,)))
        return actions

    # --- deciding --------------------------------------------------------------------------------

    def _decide(self, msg: Message, cannot_wait: str = "") -> _Outcome:
        """Decide one request through the one call builder. A require_approval with someone
        to ask comes back with a ticket (unless `cannot_wait` says why this request cannot
        wait for one); anything else comes back settled (and recorded)."""
        cid = new_correlation_id()
        call = build_call(
            msg.method or "",
            msg.params,
            self.archetype,
            self.agent_id,
            self.session_id,
            cid,
            self._annotations,
            self._definitions,
        )
        if isinstance(call, str):
            if self.recorder.active:
                self.recorder.emit(
                    FramingEvent(
                        direction="client->server",
                        reason=f"{call} (correlation {cid})",
                        request_id=msg.id,
                    )
                )
            return _Outcome(cid, error={"code": INVALID_PARAMS, "message": f"mcp-defense: {call}"})
        table = self.get_table()  # read once: the whole call runs under this table
        t_eval = _perf()
        try:
            if self.learning is not None:
                decision = table.decide(call, self.learning)  # type: ignore[call-arg]
            else:
                decision = table.decide(call)
        except Exception as e:  # noqa: BLE001 - the table must never raise; if it does, fail closed
            decision = Decision(
                Action.DENY,
                "internal_error",
                f"policy evaluation failed: {e}",
                _safe_version(table),
                cid,
            )
        eval_ms = (_perf() - t_eval) * 1e3
        observe = self.observe
        if not self.recorder.writable:  # --record-required: no recording, no call (fail closed)
            decision = Decision(
                Action.DENY,
                RECORD_REQUIRED_RULE,
                RECORD_REQUIRED_REASON,
                decision.policy_version,
                cid,
            )
            observe = False  # holds under --observe too
        action = decision.action
        allowed = observe or action is Action.ALLOW or action is Action.ALERT
        hold = _holds_results(table, self.archetype)
        if allowed and not self.recorder.active and not hold:
            return _Outcome(cid, True, call=call)  # the hot path: nothing to record
        out = _Outcome(cid, False, None, None, call, decision, msg.id, eval_ms=eval_ms, hold=hold)
        if allowed:
            self._settle(out, True, decision.reason, approval="")
        elif action is Action.REQUIRE_APPROVAL:
            if self.approval and not cannot_wait:
                self._tickets += 1
                out.ticket = self._tickets
            else:
                why = cannot_wait if self.approval else "the proxy runs without --approval"

                self._settle(out, False, f"approval required ({why}): {decision.reason}")
        else:
            self._settle(out, False, decision.reason, approval="")
        return out

    def _ask(self, out: _Outcome) -> AskApproval:
        assert out.call is not None and out.decision is not None
        return AskApproval(
            out.ticket, str(out.call.tool), out.call.arguments, out.decision, out.correlation_id
        )

    def _settle(
        self, out: _Outcome, forward: bool, reason: str, approval: str | None = None
    ) -> None:
        """Fix the outcome, record the tool_call event, build the deny error body."""
        call, decision = out.call, out.decision
        assert call is not None and decision is not None
        action = decision.action
        if approval is None:
            approval = "approved" if forward else "rejected"
        tool = call.tool
        tool_name = tool if type(tool) is str else json.dumps(tool)
        if self.recorder.active:
            t, rid, enforced, eval_ms = _time(), out.request_id, not self.observe, out.eval_ms
            self.recorder.emit_later(
                lambda: ToolCallEvent.decided(
                    call,
                    decision,
                    ts=iso_fast(t),
                    tool=tool_name,
                    reason=reason,
                    request_id=rid,
                    enforced=enforced and not decision.learning,
                    approval=approval,
                    eval_ms=eval_ms,
                )
            )
        out.forward = forward
        out.ticket = 0
        if forward:
            return
        verb = {"kill": "killed", "require_approval": "not approved"}.get(action.value, "denied")
        out.error = {
            "code": POLICY_DENIED,
            "message": f"mcp-defense: tool call {tool_name} {verb} by policy: {reason}",
            "data": {
                "decision": action.value,
                "rule": decision.rule,
                "reason": reason,
                "correlation_id": out.correlation_id,
                "policy_version": decision.policy_version,
                "tool": tool_name,
                "approval": approval,
            },
        }
        if action is Action.KILL:
            out.kill = decision

    # --- approval --------------------------------------------------------------------------------

    def approval_answered(self, ticket: int, approved: bool, reason: str) -> list[ProxyAction]:
        """The human's answer to `AskApproval(ticket)`. Unknown tickets are ignored."""
        entry = self._held.pop(ticket, None)
        if entry is None:
            return []
        held, i = entry
        out = held.outcomes[i]
        held.waiting.discard(ticket)
        if held.cancelled and approved:
            approved, reason = False, f"cancelled by the client before approval: {reason}"
        self._settle(out, approved, reason)
        if held.waiting:
            return []
        for el in held.msg.elements or (held.msg,):
            if el.kind is Kind.REQUEST:
                self._held_ids.pop(el.id, None)
        if held.cancelled:
            return []  # the client gave up on it: no answer is expected
        if held.msg.kind is Kind.BATCH:
            return self._finish_batch(held)
        if held.from_server:
            return self._finish_server_request(held.msg, held.line, out)
        return self._finish_single(held.msg, held.line, out)

    def _cancel_held(self, params: Any) -> None:
        if type(params) is dict:
            held = self._held_ids.get(params.get("requestId"))
            if held is not None:
                held.cancelled = True

    # --- server -> client ------------------------------------------------------------------------

    def server_message(self, item: bytes | Oversize | Streamed) -> list[ProxyAction]:
        if type(item) is Streamed:
            # Already delivered by the transport in pieces: only the bookkeeping is left.
            if self._pending:
                self._match_response(item.sample, item.size)
            return []
        if type(item) is Oversize:
            rid = sniff_id(item.head)
            p = self._pending.pop(rid, None) if rid is not None else None
            if p is not None:
                self._close_flow_window(p)
            return self._refuse(
                "server->client",
                f"server message of {item.size} bytes exceeds --max-message-bytes {self.max_message_bytes}",
                rid if p is not None else None,
                item.size,
                MESSAGE_TOO_LARGE,
            )
        line: bytes = item  # type: ignore[assignment]
        if self.tasks.deadlines:
            self._expire_tasks()
        # A server→client request, or a result embedding some (2026-07-28), is decided. The
        # byte search is cheap and cannot be fooled by escaped text: inside a JSON string the
        # quotes are `\"`, so only a real key or value matches.
        if line.find(b'"method"') >= 0 or line.find(b'"input_required"') >= 0:
            decided = self._server_request(line)
            if decided is not None:
                return decided
        if self._holding:
            if line.lstrip()[:1] == b"[":  # a batch of responses: each result is decided
                replaced = self._decide_batch_responses(line)
                if replaced is not None:
                    self._match_response(line)
                    return [ToClient(replaced)]
            p = self._pending.get(sniff_id(line))
            if p is not None and p.call is not None:
                self._holding -= 1
                replaced = self._decide_response(p, line)
                if replaced is not None:
                    rid = self._match_response(line)
                    return [ToClient(replaced, rid)]
        if self._pending:
            rid = self._match_response(line)
            if self._rewritten is not None:  # a tools/list without the tools policy hides
                line, self._rewritten = self._rewritten, None
            return [ToClient(line, rid)]
        return [ToClient(line)]

    @property
    def holds_results(self) -> bool:
        """Whether results must reach the session whole (response rules may rewrite them):
        a transport that streams large messages holds them instead, up to the size limit."""
        try:
            return _holds_results(self.get_table(), self.archetype)
        except Exception:  # noqa: BLE001 - unknown: hold (the safe side)
            return True

    def _decide_batch_responses(self, line: bytes) -> bytes | None:
        """Response rules on every result of a batch answer (JSON-RPC 2.0 batches, the
        2025-03-26 era): None to pass it as it is, else the batch with the results that
        rules redacted or withheld replaced, in the same order."""
        msg = parse_message(line, self.max_depth)
        if msg.kind is not Kind.BATCH:
            return None
        out: list[Any] = []
        changed = False
        for el in msg.elements:
            p = self._pending.get(el.id) if el.kind in (Kind.RESPONSE, Kind.ERROR) else None
            if p is not None and p.call is not None:
                self._holding -= 1
                replaced = self._decide_response(p, encode(el.obj))
                if replaced is not None:
                    out.append(json.loads(replaced))
                    changed = True
                    continue
            out.append(el.obj)
        return encode(out) if changed else None

    def _decide_response(self, p: _Pending, line: bytes) -> bytes | None:
        """Response rules on one result: None to pass it as it is, else the bytes to send
        instead (the result with secrets redacted, or an error withholding it)."""
        assert p.call is not None
        table = self.get_table()
        reads_text = getattr(table, "response_reads_text", None)
        found: dict[int, Any] = {}  # one scan per string serves the facts and the redaction
        if not may_contain_secrets(line) and not (reads_text and reads_text(self.archetype)):
            # Nothing a rule reads can be in it: decide on what is known without parsing
            # (a 16 MiB file read costs one linear scan, not a parse and a copy).
            info = response_info(line)
            facts = ResultFacts("", (), info is not None and info.is_error, len(line))
            body: Any = None
            obj: dict[str, Any] = {}
            key = ""
        else:
            msg = parse_message(line, self.max_depth)
            if msg.kind is Kind.RESPONSE:
                key = "result"
            elif msg.kind is Kind.ERROR:
                key = "error"
            else:
                return None
            obj = msg.obj
            body = obj.get(key)
            facts = result_facts(body, key == "error", len(line), found)
        try:
            decision = table.decide_response(p.call, facts)  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 - fail closed
            decision = Decision(Action.DENY, "internal_error", f"response rules failed: {e}", "")
        action = decision.action
        if action is Action.ALLOW:
            return None
        out: bytes | None = None
        redacted = 0
        if action is Action.REDACT and key:
            new_body, kinds = redact_result(body, found)
            redacted = len(kinds)
            if kinds:
                out = encode({**obj, key: new_body})
        elif action is not Action.ALERT and action is not Action.REDACT:
            tool = p.call.tool if type(p.call.tool) is str else json.dumps(p.call.tool)
            out = error_response(
                sniff_id(line),
                POLICY_DENIED,
                f"mcp-defense: the result of {tool} was withheld by policy: {decision.reason}",
                {
                    "decision": action.value,
                    "rule": decision.rule,
                    "reason": decision.reason,
                    "correlation_id": p.correlation_id,
                    "policy_version": decision.policy_version,
                    "tool": tool,
                },
            )
        if self.recorder.active:
            self.recorder.emit(
                ResponseDecided(
                    session_id=self.session_id,
                    correlation_id=p.correlation_id,
                    tool=str(p.call.tool),
                    decision=action.value,
                    rule=decision.rule,
                    reason=decision.reason,
                    policy_version=decision.policy_version,
                    secrets=list(facts.secrets),
                    is_error=facts.is_error,
                    size=facts.size,
                    redacted=redacted,
                    enforced=not self.observe,
                )
            )
        return None if self.observe else out

    def _server_request(self, line: bytes) -> list[ProxyAction] | None:
        """Decide what the server asks of the client; None when there is nothing to decide."""
        msg = parse_message(line, self.max_depth)
        if msg.kind is Kind.REQUEST and msg.method in SERVER_DECIDED_METHODS:
            out = self._decide(msg)
            if out.ticket:
                held = _Held(line, msg, {0: out}, waiting={out.ticket}, from_server=True)
                self._held[out.ticket] = (held, 0)
                return [self._ask(out)]
            return self._finish_server_request(msg, line, out)
        if msg.kind is Kind.NOTIFICATION:
            self._server_notification(msg)
            return [ToClient(line)]
        if msg.kind is Kind.REQUEST:
            # Undecided (ping, roots/list, …): to the client, never taken for the answer to
            # a client request that happens to have the same id.
            return [ToClient(line)]
        if msg.kind is not Kind.RESPONSE or msg.id not in self._pending:
            return None
        result = msg.obj.get("result")
        if type(result) is not dict or result.get("resultType") != "input_required":
            return None
        requests = result.get("inputRequests")
        if type(requests) is not dict:
            return None
        for key, req in requests.items():
            if type(req) is not dict or req.get("method") not in SERVER_DECIDED_METHODS:
                continue
            embedded = Message(Kind.REQUEST, req, key, req["method"], req.get("params"))
            out = self._decide(
                embedded, "an input request inside a result cannot wait for approval"
            )
            if not out.forward:
                # The client cannot be asked for part of a result: the call fails, the
                # server's request never reaches the client.
                p = self._pending.pop(msg.id)
                self._close_flow_window(p)
                error = dict(out.error or {})
                error["message"] = f"{error.get('message', '')} (input request {key!r})"
                return [ToClient(encode({"jsonrpc": "2.0", "id": msg.id, "error": error}), msg.id)]
        return None

    def _finish_server_request(self, msg: Message, line: bytes, out: _Outcome) -> list[ProxyAction]:
        """Allowed: the request goes to the client. Refused: the server gets the error."""
        if out.forward:
            return [ToClient(line)]
        answer = encode({"jsonrpc": "2.0", "id": msg.id, "error": out.error})
        return [ToServer(answer, None)]

    def _match_response(self, line: bytes, size: int = -1) -> Any:
        """Close the pending request this line answers (and record its result)."""
        recording = self.recorder.active
        if recording:
            info = response_info(line)
            rid, is_error = (info.id, info.is_error) if info is not None else (None, False)
        else:
            rid, is_error = sniff_id(line), False
        if rid is None:
            if line.lstrip()[:1] == b"[":
                self._match_batch_response(line)
            return None
        p = self._pending.pop(rid, None)
        if p is None:
            return None
        if p.task:
            self._task_answered(p, line, rid, is_error, size)
            return rid
        if (
            p.origin is not None
            and size < 0
            and len(line) <= _TASK_LINE_MAX
            and line.find(b'"taskId"') >= 0
            and self._task_created(p, line)
        ):
            return rid  # not the call's result: that comes with the task's
        if p.correlation_id and self.flows is not None:
            self.flows.call_closed(p.correlation_id)
        if p.method == "subscriptions/listen" and recording:
            self.recorder.emit(
                SubscriptionEvent(session_id=self.session_id, change="closed", request_id=rid)
            )
        if p.method == "tools/list" and size < 0:
            self._rewritten = self._learn_tools(line, p)
        if p.correlation_id and recording:
            t, cid, ms, n = _time(), p.correlation_id, (_perf() - p.t0) * 1e3, len(line)
            self.recorder.emit_later(
                lambda: ToolResultEvent(
                    ts=iso_fast(t),
                    correlation_id=cid,
                    request_id=rid,
                    is_error=is_error,
                    duration_ms=ms,
                    size=n if size < 0 else size,
                )
            )
        return rid

    def _match_batch_response(self, line: bytes) -> None:
        msg = parse_message(line, self.max_depth)
        for el in msg.elements:
            if el.kind in (Kind.RESPONSE, Kind.ERROR):
                p = self._pending.pop(el.id, None)
                if p is not None:
                    self._close_flow_window(p)
                if p is not None and p.correlation_id and self.recorder.active:
                    self.recorder.emit(
                        ToolResultEvent(
                            correlation_id=p.correlation_id,
                            request_id=el.id,
                            is_error=el.kind is Kind.ERROR,
                            duration_ms=(_perf() - p.t0) * 1e3,
                        )
                    )

    def _learn_tools(self, line: bytes, p: _Pending) -> bytes | None:
        """Keep what each listed tool says of itself — annotations and description, untrusted
        but facts for rules — and compare the list with its pins (a rug pull is seen here).
        Returns the list to send instead when policy hides some of its tools."""
        msg = parse_message(line, self.max_depth)
        result = msg.obj.get("result") if msg.kind is Kind.RESPONSE else None
        tools = result.get("tools") if type(result) is dict else None
        if type(tools) is not list:
            return None
        listed = [t for t in tools if type(t) is dict and type(t.get("name")) is str]
        statuses: dict[str, str] = {}
        if self.pins is not None:
            complete = not p.paged and not (type(result) is dict and result.get("nextCursor"))
            try:
                statuses, changes = self.pins.observe(listed, complete)
            except (PinError, OSError) as e:
                # Pins that cannot be read cannot vouch for anything: every tool is "changed"
                # (the built-in pack denies those) until the file is fixed or reset.
                self.warn(f"mcp-defense: {e}; every tool is treated as changed")
                statuses, changes = {t["name"]: CHANGED for t in listed}, []
            if self.recorder.active:
                for c in changes:
                    self.recorder.emit(
                        ToolChanged(
                            session_id=self.session_id,
                            tool=c.tool,
                            change=c.change,
                            pins=str(self.pins.path),
                            pinned_sha256=c.pinned_sha256,
                            seen_sha256=c.seen_sha256,
                            description=c.description,
                        )
                    )
            for c in changes:
                self.warn(
                    f"mcp-defense: tool {c.tool!r} {c.change} since it was pinned "
                    f"({self.pins.path}); approve with `mcp-defense pins approve --pins "
                    f"{self.pins.path}`"
                )
        for t in listed:
            name = t["name"]
            if type(t.get("annotations")) is dict:
                self._annotations[name] = t["annotations"]
            desc = t.get("description")
            self._definitions[name] = ToolDefinition(
                desc if type(desc) is str else "", statuses.get(name, "")
            )
        hidden = self._hidden_tools(listed)
        if not hidden:
            return None
        if self.recorder.active:
            self.recorder.emit(
                ToolsHidden(
                    session_id=self.session_id,
                    tools=sorted(hidden),
                    rules=sorted(set(hidden.values())),
                )
            )
        kept = [t for t in tools if not (type(t) is dict and t.get("name") in hidden)]
        assert type(result) is dict
        return encode({**msg.obj, "result": {**result, "tools": kept}})

    def _hidden_tools(self, listed: list[dict[str, Any]]) -> dict[str, str]:
        """Tools the policy refuses whatever the arguments — a call with none is denied by a
        rule, not by an error — are not offered to the agent (name → the refusing rule). A
        call to one is still decided, and denied, as any other."""
        if self.observe:
            return {}
        table = self.get_table()
        hides: Callable[[str], bool] = getattr(table, "hides", lambda rule: True)
        hidden: dict[str, str] = {}
        for t in listed:
            name = t["name"]
            d = self._definitions.get(name)
            probe = ToolCall(
                self.archetype,
                name,
                {},
                self.agent_id,
                self.session_id,
                "",
                self._annotations.get(name),
                d.description if d is not None else "",
                d.status if d is not None else "",
            )
            try:
                decision = table.decide(probe)
            except Exception:  # noqa: BLE001 - a probe that fails hides nothing
                continue
            if (
                decision.action in (Action.DENY, Action.KILL)
                and not decision.learning
                and decision.rule not in _NOT_HIDING
                and hides(decision.rule)
            ):
                hidden[name] = decision.rule
        return hidden

    # --- tasks and subscriptions -----------------------------------------------------------

    def _task_request(self, msg: Message, line: bytes) -> list[ProxyAction]:
        """tasks/get, tasks/result, tasks/cancel, tasks/update: only for a task an allowed
        call of this session created (an agent must not reach the results of tasks it did
        not start through policy). Answers are decided as the creating call's result."""
        method = msg.method or ""
        params = msg.params
        tid = params.get("taskId") if type(params) is dict else None
        task = self.tasks.by_id.get(tid) if type(tid) is str else None
        if task is None:
            shown = printable(tid if type(tid) is str else json.dumps(tid))[:200]
            scope = "proxy" if self.tasks.shared else "session"
            why = (
                "it expired"
                if type(tid) is str and tid in self.tasks.expired
                else "no allowed call"
            )
            reason = (
                f"{method} for task {shown!r} refused: {why} of this {scope} created it"
                if why == "no allowed call"
                else f"{method} for task {shown!r} refused: {why}"
            )
            if self.recorder.active:
                self.recorder.emit(
                    TaskEvent(
                        session_id=self.session_id,
                        task_id=shown,
                        change="refused",
                        method=method,
                        reason=reason,
                        request_id=msg.id,
                        enforced=not self.observe,
                    )
                )
            if not self.observe:
                data = {"decision": "deny", "rule": UNKNOWN_TASK_RULE, "reason": reason}
                answer = error_response(msg.id, POLICY_DENIED, f"mcp-defense: {reason}", data)
                return [ToClient(answer, msg.id)]
            self._pending[msg.id] = _Pending(method, "", _perf())
            return [ToServer(line, msg.id)]
        if self.closed_reason:
            return [self._error_to(msg.id, SERVER_CLOSED, self.closed_reason)]
        hold = _holds_results(self.get_table(), self.archetype)
        self._pending[msg.id] = _Pending(
            method,
            task.correlation_id,
            _perf(),
            call=task.call if hold else None,
            task=task.task_id,
        )
        self._holding += hold
        return [ToServer(line, msg.id)]

    def _task_created(self, p: _Pending, line: bytes) -> bool:
        """Whether this answer to a decided call is a task (2025-11-25 `{"task": {...}}`, or
        the tasks extension's `{"resultType": "task", "taskId": ...}`); if so, remember it.
        Not found (an unusual shape, a huge line): its tasks/* requests are refused."""
        assert p.origin is not None
        msg = parse_message(line, self.max_depth)
        result = msg.obj.get("result") if msg.kind is Kind.RESPONSE else None
        if type(result) is not dict:
            return False
        handle = result.get("task")
        ttl = handle.get("ttl") if type(handle) is dict else None
        if type(handle) is not dict:
            if result.get("resultType") != "task":
                return False
            handle, ttl = result, result.get("ttlMs")
        tid = handle.get("taskId")
        if type(tid) is not str or not tid:
            return False
        status = handle.get("status")
        old = self.tasks.by_id.pop(tid, None)
        if old is not None:
            self._end_task(old, "expired", p.method, "the server gave its id to another call")
        if len(self.tasks.by_id) >= _MAX_TASKS:
            oldest = self.tasks.by_id.pop(next(iter(self.tasks.by_id)))
            self._end_task(oldest, "expired", p.method, f"more than {_MAX_TASKS} tasks")
        ttl_ms = ttl if type(ttl) is int and ttl >= 0 else None
        now = _perf()
        deadline = now + ttl_ms / 1e3 if ttl_ms is not None else _INF
        task = _Task(tid, p.origin, p.correlation_id, p.t0, deadline)
        self.tasks.by_id[tid] = task
        self.tasks.expired.discard(tid)
        if ttl_ms is not None:
            heapq.heappush(self.tasks.deadlines, (deadline, tid))
        if self.recorder.active:
            self.recorder.emit(
                TaskEvent(
                    session_id=self.session_id,
                    task_id=printable(tid)[:200],
                    change="created",
                    correlation_id=p.correlation_id,
                    tool=_tool_name(p.origin),
                    status=status if status in TASK_STATUSES else "",
                    method=p.method,
                    ttl_ms=ttl_ms,
                    request_id=sniff_id(line),
                )
            )
        if status in TERMINAL_TASK_STATUSES:
            self._task_status(task, status, p.method)
        elif status in TASK_STATUSES:
            task.status = status
        return True

    def _task_answered(self, p: _Pending, line: bytes, rid: Any, is_error: bool, size: int) -> None:
        """The server's answer to a tasks/* request: a status to follow, or the call's result."""
        task = self.tasks.by_id.get(p.task)
        if task is None:
            return  # expired (or replaced) meanwhile
        if p.method == "tasks/result":
            # The call's result (tasks/result answers once the task is over).
            if self.recorder.active:
                self.recorder.emit(
                    ToolResultEvent(
                        ts=now_iso_fast(),
                        correlation_id=task.correlation_id,
                        request_id=rid,
                        is_error=is_error,
                        duration_ms=(_perf() - task.t0) * 1e3,
                        size=len(line) if size < 0 else size,
                    )
                )
            if not task.ended:
                failed = is_error and _is_jsonrpc_error(line)
                self._task_status(task, "failed" if failed else "completed", p.method)
            return
        if size >= 0:
            return  # streamed past the session (HTTP): too large to be a task's status
        msg = parse_message(line, self.max_depth)
        result = msg.obj.get("result") if msg.kind is Kind.RESPONSE else None
        if type(result) is not dict:
            return
        if type(result.get("task")) is dict:  # some servers wrap the task
            result = result["task"]
        status = result.get("status")
        if (
            status in TERMINAL_TASK_STATUSES
            and not task.ended
            and ("result" in result or "error" in result)
            and self.recorder.active
        ):
            # The tasks extension carries the call's result inline in tasks/get.
            self.recorder.emit(
                ToolResultEvent(
                    ts=now_iso_fast(),
                    correlation_id=task.correlation_id,
                    request_id=rid,
                    is_error="error" in result or _is_tool_error(result.get("result")),
                    duration_ms=(_perf() - task.t0) * 1e3,
                    size=len(line),
                )
            )
        self._task_status(task, status, p.method)

    def _task_status(self, task: _Task, status: Any, method: str) -> None:
        if task.ended or status not in TASK_STATUSES or status == task.status:
            return  # nothing new (terminal statuses are final)
        task.status = status
        if status in TERMINAL_TASK_STATUSES:
            self._end_task(task, "ended", method)
        elif self.recorder.active:
            self.recorder.emit(self._task_event(task, "status", method))

    def _end_task(self, task: _Task, change: str, method: str, reason: str = "") -> None:
        """The task is over (or forgotten): the call's flow window starts closing."""
        if change == "expired":
            self.tasks.expired.add(task.task_id)
        if task.ended and change == "expired":
            return  # its end was already recorded; only forgotten now
        task.ended = True
        if self.flows is not None:
            self.flows.call_closed(task.correlation_id)
        if self.recorder.active:
            self.recorder.emit(self._task_event(task, change, method, reason))

    def _task_event(self, task: _Task, change: str, method: str, reason: str = "") -> TaskEvent:
        return TaskEvent(
            session_id=self.session_id,
            task_id=printable(task.task_id)[:200],
            change=change,
            correlation_id=task.correlation_id,
            tool=_tool_name(task.call),
            status=task.status if task.status in TASK_STATUSES else "",
            method=method,
            reason=reason,
        )

    def _drop_task(self, task: _Task, reason: str) -> None:
        self.tasks.by_id.pop(task.task_id, None)
        self._end_task(task, "expired", "", reason)

    def _expire_tasks(self) -> None:
        """Forget the tasks whose ttl has passed (the server may discard them and their
        results): an unfinished one's flow window closes, and its tasks/* are refused."""
        now = _perf()
        heap = self.tasks.deadlines
        while heap and heap[0][0] <= now:
            deadline, tid = heapq.heappop(heap)
            task = self.tasks.by_id.get(tid)
            if task is not None and task.deadline == deadline:
                self._drop_task(task, "its ttl passed")
        if len(self.tasks.expired) > _MAX_TASKS:
            self.tasks.expired.clear()  # only for the wording of a refusal

    def _listen(self, msg: Message, line: bytes) -> list[ProxyAction]:
        """subscriptions/listen (2026-07-28): each resource it subscribes to is decided as a
        `resources/subscribe` of that URI (the same rules, the same events); the stream is
        recorded as it opens, is acknowledged and ends."""
        params = msg.params if type(msg.params) is dict else {}
        wanted = params.get("notifications")
        uris = wanted.get("resourceSubscriptions") if type(wanted) is dict else None
        if uris is not None and type(uris) is not list:
            return [
                self._error_to(
                    msg.id, INVALID_PARAMS, "mcp-defense: resourceSubscriptions must be a list"
                )
            ]
        for uri in uris or ():
            el = Message(Kind.REQUEST, msg.obj, msg.id, "resources/subscribe", {"uri": uri})
            out = self._decide(el, "a subscriptions/listen stream cannot wait for approval")
            if not out.forward:
                error = dict(out.error or {})
                error["message"] = f"{error.get('message', '')} (in subscriptions/listen)"
                actions: list[ProxyAction] = [
                    ToClient(encode({"jsonrpc": "2.0", "id": msg.id, "error": error}), msg.id)
                ]
                if out.kill is not None:
                    actions.append(Kill(out.kill.rule, out.kill.reason, (out.correlation_id,)))
                return actions
        if self.closed_reason:
            return [self._error_to(msg.id, SERVER_CLOSED, self.closed_reason)]
        if self.recorder.active:
            self.recorder.emit(
                SubscriptionEvent(
                    session_id=self.session_id,
                    change="listen",
                    request_id=msg.id,
                    notifications=wanted if type(wanted) is dict else {},
                )
            )
        self._pending[msg.id] = _Pending("subscriptions/listen", "", _perf())
        return [ToServer(line, msg.id)]

    def _server_notification(self, msg: Message) -> None:
        """Task statuses are followed; resource updates and listen acknowledgements recorded."""
        method = msg.method
        params = msg.params if type(msg.params) is dict else {}
        if method == "notifications/tasks/status":
            tid = params.get("taskId")
            task = self.tasks.by_id.get(tid) if type(tid) is str else None
            if task is not None:
                self._task_status(task, params.get("status"), method)
            return
        if not self.recorder.active:
            return
        meta = params.get("_meta")
        stream = meta.get(_SUBSCRIPTION_ID) if type(meta) is dict else None
        if method == "notifications/resources/updated":
            uri = params.get("uri")
            self.recorder.emit(
                SubscriptionEvent(
                    session_id=self.session_id,
                    change="resource_updated",
                    request_id=stream,
                    uri=printable(uri)[:2000] if type(uri) is str else "",
                )
            )
        elif method == "notifications/subscriptions/acknowledged":
            honoured = params.get("notifications")
            self.recorder.emit(
                SubscriptionEvent(
                    session_id=self.session_id,
                    change="acknowledged",
                    request_id=stream,
                    notifications=honoured if type(honoured) is dict else {},
                )
            )

    # --- the server going away -----------------------------------------------------------------

    def server_write_failed(self, request_id: Any) -> list[ProxyAction]:
        """The bytes of `ToServer(request_id)` could not be written: answer that request."""
        p = self._pending.pop(request_id, None) if request_id is not None else None
        if p is None:
            return []
        return self._fail(request_id, p, "mcp-defense: the MCP server is not accepting input")

    def server_gone(self, message: str) -> list[ProxyAction]:
        """The server exited or stopped answering: fail every pending request with `message`,
        and every later request too (held approvals included, once answered)."""
        self.closed_reason = self.closed_reason or message
        pending, self._pending = self._pending, {}
        actions: list[ProxyAction] = []
        for rid, p in pending.items():
            actions.extend(self._fail(rid, p, message))
        if not self.tasks.shared:
            for task in list(self.tasks.by_id.values()):
                self._drop_task(task, f"the server went away: {message}")
        # Requests still waiting for a human: no answer can help them now. Each is settled
        # as not approved (and recorded), and the client is answered.
        for ticket in list(self._held):
            actions.extend(self.approval_answered(ticket, False, f"approval moot: {message}"))
        return actions

    def _fail(self, rid: Any, p: _Pending, message: str) -> list[ProxyAction]:
        self._close_flow_window(p)
        if p.correlation_id and not p.task and self.recorder.active:
            self.recorder.emit(
                ToolResultEvent(
                    correlation_id=p.correlation_id,
                    request_id=rid,
                    is_error=True,
                    duration_ms=(_perf() - p.t0) * 1e3,
                )
            )
        return [self._error_to(rid, SERVER_CLOSED, message)]

    def _fail_unsent(self, rid: Any, correlation_id: str) -> list[ProxyAction]:
        """An allowed request that cannot reach the server any more (it is gone)."""
        return self._fail(rid, _Pending("", correlation_id, _perf()), self.closed_reason)

    def _close_flow_window(self, p: _Pending) -> None:
        """A forwarded request is over (answered or failed): its flow window starts closing.
        (A tasks/* request is not the call: the task's end closes the call's window.)"""
        if p.correlation_id and not p.task and self.flows is not None:
            self.flows.call_closed(p.correlation_id)

    # --- refusing --------------------------------------------------------------------------------

    def _error_to(self, rid: Any, code: int, message: str) -> ToClient:
        return ToClient(error_response(rid, code, message), rid)

    def _refuse(
        self, direction: str, reason: str, rid: Any, size: int, code: int, answer: bool = True
    ) -> list[ProxyAction]:
        """Drop a message, answer its sender with an error (id null if unknown, as JSON-RPC
        asks for unparseable input), and record why."""
        if self.recorder.active:
            self.recorder.emit(
                FramingEvent(direction=direction, reason=reason, request_id=rid, size=size)
            )
        else:
            self.warn(f"mcp-defense: refused {direction} message: {printable(reason)}")
        if answer and (direction == "client->server" or rid is not None):
            return [self._error_to(rid, code, f"mcp-defense: {reason}")]
        return []


_perf = time.perf_counter
_time = time.time
_INF = float("inf")
# A task handle is small: an answer larger than this is not looked at for one (and a task
# it hides cannot be reached: its tasks/* requests are refused).
_TASK_LINE_MAX = 64 * 1024
_MAX_TASKS = 4096  # per session; beyond, the oldest is forgotten (its window closes)
UNKNOWN_TASK_RULE = "unknown_task"
_SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
# Denials that say nothing about the tool itself (the probe call has no arguments).
_NOT_HIDING = frozenset(
    {"rule_error", "malformed_arguments", "internal_error", "budget_exceeded", "unknown_archetype"}
)


def _holds_results(table: Any, archetype: str) -> bool:
    has = getattr(table, "has_response_rules", None)
    return bool(has(archetype)) if has is not None else False


def _tool_name(call: ToolCall) -> str:
    return call.tool if type(call.tool) is str else json.dumps(call.tool)


def _is_tool_error(result: Any) -> bool:
    return type(result) is dict and result.get("isError") is True


def _is_jsonrpc_error(line: bytes) -> bool:
    """An error answer rather than a result (error answers are small: a large line is not)."""
    if len(line) > _TASK_LINE_MAX:
        return False
    return parse_message(line).kind is Kind.ERROR


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _safe_version(table: Any) -> str:
    try:
        return str(table.version)
    except Exception:  # noqa: BLE001
        return ""
