"""The plain-value shapes every runtime hands to the compiled table.

They live apart from the table so the extractor, the runtimes and the compiler share one
definition without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    ALLOW = "allow"
    ALERT = "alert"
    REDACT = "redact"  # response rules only: the result reaches the client with secrets replaced
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"
    KILL = "kill"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def blocks(self) -> bool:
        """Whether the call must not reach the server (approval pending counts as blocking)."""
        return self in (Action.DENY, Action.KILL, Action.REQUIRE_APPROVAL)


_SEVERITY = {
    Action.ALLOW: 0,
    Action.ALERT: 1,
    Action.REDACT: 2,
    Action.REQUIRE_APPROVAL: 3,
    Action.DENY: 4,
    Action.KILL: 5,
}


@dataclass(slots=True)
class CallFacts:
    """What the extractor derived from one tools/call. Field names match `call.*` in CEL.

    Not frozen: it is built on every decision, and a frozen dataclass's __init__ costs about
    1.5 µs more. Treat it as read-only; the fields are tuples.
    """

    tool: str
    args: Mapping[str, Any]
    paths: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    programs: tuple[str, ...] = ()
    reads: bool = False
    writes: bool = False
    spawns: bool = False
    network: bool = False
    annotations: Mapping[str, Any] = field(default_factory=dict)
    # The paths the call may write: every path, unless the extractor knows which arguments are
    # only read (a `cp` source, a `<` redirection); empty when the call does not write.
    written: tuple[str, ...] = ()
    # What the server said about the tool (its tools/list entry), and how that compares with
    # the pinned definition: "pinned" (unchanged), "changed", "new" (added after pinning),
    # "" (no pin, or not listed yet).
    description: str = ""
    tool_status: str = ""


@dataclass(frozen=True, slots=True)
class ResultFacts:
    """What response rules see of one result (`result.*`)."""

    text: str = ""  # the result's text (content, embedded resources, structured strings)
    secrets: tuple[str, ...] = ()  # kinds of secrets found (policy/extract/secrets.py)
    is_error: bool = False
    size: int = 0  # bytes of the response message


@dataclass(frozen=True, slots=True)
class FlowFacts:
    """One network flow as rules see it (`flow.*`)."""

    src_ip: str = ""
    src_port: int = 0
    dst_ip: str = ""
    dst_port: int = 0
    host: str = ""
    protocol: str = "tcp"
    pid: int = 0
    cgroup_id: int = 0
    binary: str = ""
    calls: int = 0
    ts: float = 0.0


@dataclass(slots=True)
class ToolCall:
    """The input of `DecisionTable.decide`: one tools/call as any runtime sees it.
    (Not frozen, for the same per-call cost reason as CallFacts.)"""

    archetype: str
    tool: Any
    arguments: Any
    agent_id: str = ""
    session_id: str = ""
    correlation_id: str = ""
    annotations: Mapping[str, Any] | None = None
    description: str = ""  # the tool's description as the server listed it
    tool_status: str = ""  # pinned | changed | new | "" (see CallFacts)


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """What a runtime learnt of one tool from the server's tools/list."""

    description: str = ""
    status: str = ""


@dataclass(slots=True)
class Decision:
    """The answer for one call or flow. `rule` is empty only for the table's default.

    Not frozen (built on every decision; a frozen __init__ costs ~1 µs more): treat as
    read-only.
    """

    action: Action
    rule: str
    reason: str
    policy_version: str
    correlation_id: str = ""
    source: str = ""  # file:line:col of the deciding rule
    learning: bool = False  # decided in an archetype's learning period (downgraded to alert)
    facts: CallFacts | None = field(default=None, compare=False, repr=False)  # for recording

    @property
    def decision(self) -> str:
        return self.action.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.action.value,
            "rule": self.rule,
            "reason": self.reason,
            "policy_version": self.policy_version,
        }


class ExtractionError(Exception):
    """Arguments the extractor refuses to interpret; the table turns it into a deny."""


@dataclass(frozen=True, slots=True)
class JoinSpec:
    """Compiled `correlate` block: how a flow is joined to the tool calls that may explain it.

    `keys` are tried in order (the first key both sides know decides; e.g. cgroup id first,
    then server pid and its descendants); a flow joins every open call whose window covers it.
    """

    keys: tuple[str, ...] = ("cgroup_id", "pid")
    window_s: float = 5.0
