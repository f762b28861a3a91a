"""The one event family: everything a runtime reports is one of these, as one JSON object.

Recordings (`--record`), the flight recorder, replay (`policy test`) and SIEM sinks all read
and write these shapes through `Event.to_dict` / `event_from_dict`, so the wire format has a
single definition. `docs/record.schema.json` is generated from these classes by
`events/schema.py` (a test fails when the two differ).
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from mcp_defense.policy.facts import Decision, ToolCall

# 2: every event has `event_id` and `schema_version`; tool_call has `decision_id`, `eval_ms`,
# `masked`; new types recording_gap, events_dropped, audit_head. Version-1 lines still read.
SCHEMA_VERSION = 2


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_corr_counter = itertools.count(1)
_corr_prefix = f"{os.getpid():x}{int(time.time()) & 0xFFFFFF:06x}"


def new_correlation_id() -> str:
    """`tc_` + process-unique prefix + counter: unique per runtime, cheap, sortable."""
    return f"tc_{_corr_prefix}_{next(_corr_counter):06d}"


_id_counter = itertools.count(1)
_id_prefix = os.urandom(10).hex()


def new_event_id() -> str:
    """Globally unique (80 random bits per process + a counter) and ~20x cheaper than uuid4:
    every event gets one, so receivers can de-duplicate at-least-once deliveries."""
    return f"{_id_prefix}-{next(_id_counter):x}"


def printable(text: str) -> str:
    """Escape what a terminal would interpret (ESC sequences, C1 controls, bidi overrides,
    newlines): tool names, reasons and arguments come from an untrusted agent or server, and
    must not be able to repaint the operator's screen or a prompt."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(slots=True, kw_only=True)
class Event:
    type: ClassVar[str] = "event"
    ts: str = field(default_factory=now_iso)
    event_id: str = field(default_factory=new_event_id)  # unique: receivers de-duplicate on it
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = {"type": self.type}
        d.update(asdict(self))
        return d


@dataclass(slots=True, kw_only=True)
class SessionStart(Event):
    type: ClassVar[str] = "session_start"
    session_id: str
    agent_id: str
    archetype: str
    policy_version: str
    server_command: list[str] = field(default_factory=list)
    server_pid: int = 0
    # Names (never values) of the variables withheld from a stdio server's environment.
    env_withheld: list[str] = field(default_factory=list)
    # Names of the credential-looking variables it was given (its archetype's `env`,
    # --pass-env): which secrets this server holds.
    env_credentials: list[str] = field(default_factory=list)
    # HTTP transports: the upstream server's URL and the transport ("http", "sse").
    upstream: str = ""
    transport: str = ""
    observe: bool = False
    sandbox: dict[str, Any] | None = None  # --sandbox: what the kernel enforces (and not)
    # The policy variables (--set and defaults) the session ran under: a replay under other
    # values can decide differently, and `policy test` says so.
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class ToolCallEvent(Event):
    """One decided tools/call. `arguments` is the raw JSON object the client sent."""

    type: ClassVar[str] = "tool_call"
    correlation_id: str
    agent_id: str
    archetype: str
    tool: str
    arguments: Any
    decision: str
    rule: str
    reason: str
    policy_version: str
    session_id: str = ""
    request_id: Any = None
    enforced: bool = True  # False under --observe or learning mode
    approval: str = ""  # "", "approved", "rejected" (with the reason in `reason`)
    paths: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    annotations: dict[str, Any] | None = None  # the server's tool annotations, as decided with
    description: str = ""  # the tool's listed description, as decided with (replayed)
    tool_status: str = ""  # the tool's definition against its pin, as decided with (replayed)
    expect: str | None = None  # set by a reviewer; `policy test` prefers it to `decision`
    decision_id: str = field(default_factory=new_event_id)  # OPA's decision_id
    eval_ms: float = 0.0  # time the table took to decide (approval excluded)
    masked: list[str] = field(default_factory=list)  # argument paths masked as secrets (sinks)

    @classmethod
    def decided(
        cls,
        call: ToolCall,
        decision: Decision,
        *,
        ts: str | None = None,
        tool: str | None = None,
        reason: str | None = None,
        request_id: Any = None,
        enforced: bool | None = None,
        approval: str = "",
        eval_ms: float = 0.0,
    ) -> ToolCallEvent:
        """The event for `call` as `decision` decided it: the one mapping from the table's
        input and output to the recorded line (runtimes override e.g. the approval outcome).
        Built with one constructor call: the proxy builds one per decided call."""
        facts = decision.facts
        annotations = call.annotations
        return cls(
            ts=now_iso() if ts is None else ts,
            correlation_id=call.correlation_id,
            agent_id=call.agent_id,
            archetype=call.archetype,
            tool=call.tool if tool is None else tool,
            arguments=call.arguments,
            decision=decision.action.value,
            rule=decision.rule,
            reason=decision.reason if reason is None else reason,
            policy_version=decision.policy_version,
            session_id=call.session_id,
            request_id=request_id,
            enforced=not decision.learning if enforced is None else enforced,
            approval=approval,
            annotations=dict(annotations) if annotations is not None else None,
            description=call.description,
            tool_status=call.tool_status,
            paths=list(facts.paths) if facts is not None else [],
            hosts=list(facts.hosts) if facts is not None else [],
            eval_ms=eval_ms,
        )


@dataclass(slots=True, kw_only=True)
class ToolResultEvent(Event):
    type: ClassVar[str] = "tool_result"
    correlation_id: str
    request_id: Any = None
    is_error: bool = False
    duration_ms: float = 0.0
    size: int = 0


@dataclass(slots=True, kw_only=True)
class FramingEvent(Event):
    """A message refused before policy (bad JSON, bad UTF-8, too large, too deep, batch...)."""

    type: ClassVar[str] = "framing_refused"
    direction: str  # "client->server" | "server->client"
    reason: str
    request_id: Any = None
    size: int = 0


@dataclass(slots=True, kw_only=True)
class ResponseDecided(Event):
    """A result a response rule acted on: redacted, withheld (deny) or alerted. Only the
    kinds of secrets are recorded, never their values."""

    type: ClassVar[str] = "tool_response"
    session_id: str
    correlation_id: str
    tool: str
    decision: str  # alert | redact | deny
    rule: str
    reason: str
    policy_version: str
    secrets: list[str] = field(default_factory=list)
    is_error: bool = False
    size: int = 0  # bytes of the response message
    redacted: int = 0  # secrets replaced
    enforced: bool = True  # False under --observe (the result passed unchanged)


@dataclass(slots=True, kw_only=True)
class ToolsHidden(Event):
    """Tools removed from a tools/list: the policy refuses them whatever the arguments, so
    the agent is never offered them (a call to one is still denied)."""

    type: ClassVar[str] = "tools_hidden"
    session_id: str
    tools: list[str]
    rules: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class ToolChanged(Event):
    """A tool's definition (name, description, schemas, annotations) differs from its pin: a
    rug pull until someone approves it (`mcp-defense pins approve`)."""

    type: ClassVar[str] = "tool_changed"
    session_id: str
    tool: str
    change: str  # "changed" | "added" | "removed"
    pins: str  # the pin file
    pinned_sha256: str = ""
    seen_sha256: str = ""
    description: str = ""  # the description now listed (first 2,000 characters)


@dataclass(slots=True, kw_only=True)
class TaskEvent(Event):
    """A task-based call (`tasks/*`): the decided call a server answered with a task, and
    what became of the task. The call's result, fetched later (`tasks/result`, or inline in a
    `tasks/get`), is its `tool_result` and passes the response rules with the call's facts.
    `change`: "created" (the call's answer was a task: its flow window stays open),
    "status" (a new status), "ended" (terminal status: the window closes), "expired" (its
    ttl passed, or the server went away, before it ended), "refused" (a `tasks/*` request for
    a task no allowed call of this session created)."""

    type: ClassVar[str] = "task"
    session_id: str
    task_id: str
    change: str
    correlation_id: str = ""  # the tools/call that created the task ("" when refused)
    tool: str = ""
    status: str = ""  # working | input_required | completed | failed | cancelled
    method: str = ""  # the message it was seen in (tools/call, tasks/get, notifications/…)
    ttl_ms: int | None = None
    reason: str = ""
    request_id: Any = None
    enforced: bool = True  # False under --observe (a refused request was forwarded)


@dataclass(slots=True, kw_only=True)
class SubscriptionEvent(Event):
    """What a client listens to and what it is told: a `subscriptions/listen` stream opened
    ("listen", with the notifications asked for; its resource URIs are decided as
    `resources/subscribe` calls first), acknowledged by the server ("acknowledged", with the
    ones honoured) and ended ("closed"), and each `notifications/resources/updated`
    ("resource_updated", with the URI)."""

    type: ClassVar[str] = "subscription"
    session_id: str
    change: str
    request_id: Any = None  # the subscriptions/listen request (its id names the stream)
    notifications: dict[str, Any] = field(default_factory=dict)
    uri: str = ""


@dataclass(slots=True, kw_only=True)
class PolicyReloaded(Event):
    type: ClassVar[str] = "policy_reloaded"
    old_version: str
    new_version: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    duration_ms: float = 0.0


@dataclass(slots=True, kw_only=True)
class PolicyReloadFailed(Event):
    type: ClassVar[str] = "policy_reload_failed"
    version_in_force: str
    diagnostics: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class FlowEvent(Event):
    """A network flow and its verdict. `correlation_ids` empty means an orphan."""

    type: ClassVar[str] = "flow"
    src_ip: str = ""
    src_port: int = 0
    dst_ip: str = ""
    dst_port: int = 0
    protocol: str = "tcp"
    pid: int = 0
    cgroup_id: int = 0
    binary: str = ""
    source: str = ""  # which flow source saw it
    correlation_ids: list[str] = field(default_factory=list)
    orphan: bool = False
    verdict: str = "allow"
    rule: str = ""
    reason: str = ""
    policy_version: str = ""


@dataclass(slots=True, kw_only=True)
class KillEvent(Event):
    type: ClassVar[str] = "kill"
    server_pid: int
    rule: str
    reason: str
    flow: dict[str, Any] = field(default_factory=dict)
    correlation_ids: list[str] = field(default_factory=list)
    signal: str = "SIGKILL"
    killed_pids: list[int] = field(default_factory=list)  # every process that got the signal
    survivors: list[int] = field(default_factory=list)  # still alive after the kill timeout


@dataclass(slots=True, kw_only=True)
class ServerExit(Event):
    type: ClassVar[str] = "server_exit"
    server_pid: int
    returncode: int | None
    pending_requests: int = 0


@dataclass(slots=True, kw_only=True)
class RecordingGap(Event):
    """Events that could not be written to the recording (full disk, I/O error), counted
    while the outage lasted and written first when writing works again."""

    type: ClassVar[str] = "recording_gap"
    lost: int
    since: str  # timestamp of the first lost event
    error: str = ""
    path: str = ""


@dataclass(slots=True, kw_only=True)
class EventsDropped(Event):
    """A sink's spool overflowed its size limit: the oldest undelivered events were dropped."""

    type: ClassVar[str] = "events_dropped"
    sink: str
    dropped: int
    reason: str = ""


@dataclass(slots=True, kw_only=True)
class AuditHead(Event):
    """The head of the `--audit-log` hash chain, sent to sinks so a rewritten log is caught
    even when the rewriter also recomputes every hash."""

    type: ClassVar[str] = "audit_head"
    path: str
    lines: int
    hash: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        SessionStart,
        ToolCallEvent,
        ToolResultEvent,
        FramingEvent,
        ToolChanged,
        ToolsHidden,
        ResponseDecided,
        TaskEvent,
        SubscriptionEvent,
        PolicyReloaded,
        PolicyReloadFailed,
        FlowEvent,
        KillEvent,
        ServerExit,
        RecordingGap,
        EventsDropped,
        AuditHead,
    )
}


class EventFormatError(ValueError):
    """A recorded line that is not a valid event; carries a message fit for file:line reports."""


def event_from_dict(d: Any) -> Event:
    """Rebuild an event, rejecting unknown types and missing or mistyped required fields."""
    if not isinstance(d, dict):
        raise EventFormatError("event is not a JSON object")
    etype = d.get("type")
    cls = EVENT_TYPES.get(etype) if isinstance(etype, str) else None
    if cls is None:
        raise EventFormatError(f"unknown event type {etype!r}")
    kwargs: dict[str, Any] = {"schema_version": 1}  # lines written before the field existed
    for f in fields(cls):
        if f.name in d:
            kwargs[f.name] = d[f.name]
    try:
        ev = cls(**kwargs)
    except TypeError as e:
        missing = [
            f.name for f in fields(cls) if f.name not in d and f.default is f.default_factory
        ]
        raise EventFormatError(
            f"{etype}: missing required field(s) {', '.join(missing) or e}"
        ) from e
    _check_types(ev)
    return ev


_STR_FIELDS = {
    "ts",
    "correlation_id",
    "agent_id",
    "archetype",
    "tool",
    "decision",
    "rule",
    "reason",
    "policy_version",
    "session_id",
    "event_id",
    "decision_id",
}


def _check_types(ev: Event) -> None:
    for f in fields(ev):
        v = getattr(ev, f.name)
        if f.name in _STR_FIELDS and not isinstance(v, str):
            raise EventFormatError(
                f"{ev.type}: field {f.name!r} must be a string, got {type(v).__name__}"
            )
    if isinstance(ev, ToolCallEvent):
        from mcp_defense.policy.facts import Action

        valid = {a.value for a in Action}
        if ev.expect is not None and not isinstance(ev.expect, str):
            raise EventFormatError(
                f"tool_call: expect must be a string, got {type(ev.expect).__name__}"
            )
        if ev.annotations is not None and not isinstance(ev.annotations, dict):
            raise EventFormatError("tool_call: annotations must be an object")
        if ev.decision not in valid:
            raise EventFormatError(
                f"tool_call: decision {ev.decision!r} is not one of {sorted(valid)}"
            )
        if ev.expect is not None and ev.expect not in valid:
            raise EventFormatError(f"tool_call: expect {ev.expect!r} is not one of {sorted(valid)}")
