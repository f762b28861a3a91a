"""The compiled, immutable decision table and the only code on the decision hot path.

`decide` = extract facts → pick the archetype's pre-sorted rule list (by tool name when rules
are indexed that way) → run lowered closures in order → the first match wins. Rules are sorted
at compile time by (priority desc, severity desc, definition order), so the first match *is* the
documented conflict-resolution winner and evaluation stops there.

Nothing here parses policy text or CEL source; closures were built by the compiler.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from string import Formatter
from types import MappingProxyType
from typing import Any, ClassVar

from mcp_defense.policy.extract import Classifier, Environment, extract
from mcp_defense.policy.facts import (
    Action,
    CallFacts,
    Decision,
    ExtractionError,
    FlowFacts,
    JoinSpec,
    ResultFacts,
    ToolCall,
)
from mcp_defense.policy.globs import GlobSet

# Rule names the engine itself decides with (fail closed); documented in docs/language.md.
UNKNOWN_ARCHETYPE = "unknown_archetype"
MALFORMED_ARGUMENTS = "malformed_arguments"
RULE_ERROR = "rule_error"
BUDGET_EXCEEDED = "budget_exceeded"
INTERNAL_ERROR = "internal_error"
DEFAULT_RULE = ""


class _Id:
    __slots__ = ("id",)

    def __init__(self, ident: str) -> None:
        self.id = ident


_ids: dict[str, _Id] = {}


def _id(ident: str) -> _Id:
    """`agent` / `session` objects are shared per id: one allocation per runtime, not call."""
    obj = _ids.get(ident)
    if obj is None:
        if len(_ids) > 1024:
            _ids.clear()
        obj = _ids[ident] = _Id(ident)
    return obj


class EvalCtx:
    """What a lowered closure reads: `call`, `flow`, `agent`, `session`, plus `witness` and
    the `deadline` of the CEL run-time budget (set by its first check, see cel.runtime)."""

    __slots__ = (
        "call",
        "flow",
        "result",
        "agent",
        "session",
        "archetype",
        "vars",
        "witness",
        "deadline",
    )
    budgeted = True

    def __init__(
        self,
        call: CallFacts | None,
        flow: FlowFacts | None,
        agent_id: str,
        session_id: str,
        archetype: Any,
        variables: Mapping[str, str],
    ) -> None:
        self.call = call
        self.flow = flow
        self.result: ResultFacts | None = None
        self.agent = _id(agent_id)
        self.session = _id(session_id)
        self.archetype = archetype
        self.vars = variables
        self.witness: dict[str, Any] = {}


# ---------------------------------------------------------------------------------------------
# Archetypes as compile-time constants


@dataclass(frozen=True, slots=True)
class NetEntry:
    """One `network` entry: host glob (or CIDR) and port (None = any port)."""

    text: str
    host_re: re.Pattern[str] | None
    network: Any  # ipaddress network for CIDR entries
    port: int | None

    def admits(self, host: str, port: int | None) -> bool:
        if self.port is not None and port is not None and port != self.port:
            return False
        if self.port is not None and port is None:
            return False
        if self.network is not None:
            import ipaddress

            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        return self.host_re is not None and self.host_re.fullmatch(host) is not None


@dataclass(frozen=True, slots=True)
class EnvSpec:
    """The archetype's `env`: which of the proxy's variables a stdio server inherits
    (proxy/environment.py applies it)."""

    any: bool = False  # `env any`: every variable
    default: bool = True  # the variables whose names do not say they are credentials
    names: tuple[str, ...] = ()  # names or globs passed whatever they look like


@dataclass(frozen=True, slots=True)
class ArchetypeConst:
    """The archetype as CEL sees it (`archetype.*`), folded into every rule at compile time."""

    name: str
    network: str  # none | any | list
    spawn: bool
    learning: bool
    description: str
    paths: GlobSet | None  # None = any
    writes: GlobSet | None  # None = any
    net_entries: tuple[NetEntry, ...]
    spawn_programs: GlobSet | None  # None = any (when spawn is true)
    learn_s: float | None
    source: str
    runtime: tuple[str, ...] = ()  # globs the server's runtime reads (kernel sandbox only)
    env: EnvSpec = field(default_factory=EnvSpec)  # what a stdio server inherits
    _resolved: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    _memo: dict[str, bool] = field(default_factory=dict, compare=False)  # endpoint → allowed

    # The fields each method reads: the fold lowers a rule that calls only these methods once
    # for all archetypes that agree on their fields (check._fold_key). A method missing here
    # makes its rules fold per archetype (always correct, only slower).
    METHOD_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "allows_path": ("paths",),
        "allows_write": ("writes",),
        "allows_host": ("network", "net_entries"),
        "allows_endpoint": ("network", "net_entries"),
        "allows_program": ("spawn", "spawn_programs"),
        "allows_flow": ("network", "net_entries"),
    }

    def allows_path(self, path: str) -> bool:
        return self.paths is None or self.paths.matches(path)

    def allows_write(self, path: str) -> bool:
        return self.writes is None or self.writes.matches(path)

    def allows_host(self, host: str) -> bool:
        if self.network == "any":
            return True
        if self.network == "none":
            return False
        h = host.lower().rstrip(".")
        return any(e.admits(h, e.port) for e in self.net_entries)  # any port the entry allows

    def allows_endpoint(self, endpoint: str) -> bool:
        if self.network == "any":
            return True
        if self.network == "none":
            return False
        memo = self._memo
        hit = memo.get(endpoint)
        if hit is None:
            host, port = split_endpoint(endpoint)
            hit = any(e.admits(host, port) for e in self.net_entries)
            if len(memo) > 4096:
                memo.clear()
            memo[endpoint] = hit
        return hit

    def allows_program(self, program: str) -> bool:
        if not self.spawn:
            return False
        return self.spawn_programs is None or self.spawn_programs.matches(os.path.basename(program))

    def allows_flow(self, flow: Any) -> bool:
        """A flow usually carries only an IP: host-name entries are resolved once and cached."""
        if self.network == "any":
            return True
        if self.network == "none":
            return False
        port = int(_get(flow, "dst_port") or 0) or None
        host = str(_get(flow, "host") or "")
        ip = str(_get(flow, "dst_ip") or "")
        for e in self.net_entries:
            if host and e.admits(host.lower(), port):
                return True
            if ip and e.admits(ip, port):
                return True
            if ip and e.network is None and ip in self._resolve(e.text):
                if e.port is None or e.port == port:
                    return True
        return False

    def _resolve(self, entry: str) -> tuple[str, ...]:
        cached = self._resolved.get(entry)
        if cached is not None:
            return cached
        host, _ = split_endpoint(entry)
        ips: tuple[str, ...] = ()
        if host and "*" not in host:
            import socket

            try:
                ips = tuple(sorted({str(ai[4][0]) for ai in socket.getaddrinfo(host, None)}))
            except OSError:
                ips = ()
        self._resolved[entry] = ips
        return ips


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def split_endpoint(endpoint: str) -> tuple[str, int | None]:
    """'host:port' / '[v6]:port' / 'host' → (lower-case host, port or None)."""
    s = endpoint.strip()
    if s.startswith("["):
        end = s.find("]")
        host = s[1:end] if end > 0 else s[1:]
        rest = s[end + 1 :] if end > 0 else ""
        port_s = rest[1:] if rest.startswith(":") else ""
    elif s.count(":") == 1:
        host, port_s = s.split(":", 1)
    else:
        host, port_s = s, ""
    port = int(port_s) if port_s.isdigit() else None
    return host.lower().rstrip("."), port


# ---------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True, slots=True)
class ReasonTemplate:
    """A reason with `{fact}` holes, split once at compile time; no holes → a constant."""

    parts: tuple[tuple[str, str | None], ...]
    static: str | None = None

    @staticmethod
    def parse(text: str) -> ReasonTemplate:
        parts: list[tuple[str, str | None]] = []
        try:
            for literal, name, _spec, _conv in Formatter().parse(text):
                parts.append((literal, name if name else None))
        except ValueError:
            parts = [(text, None)]
        static = text if all(n is None for _, n in parts) else None
        if static is not None:
            static = "".join(lit for lit, _ in parts)  # `{{` unescaped like the holes would be
        return ReasonTemplate(tuple(parts), static)

    def fields(self) -> tuple[str, ...]:
        return tuple(n for _, n in self.parts if n)

    def render(self, values: Callable[[str], str]) -> str:
        if self.static is not None:
            return self.static
        out = ""
        for lit, name in self.parts:  # a plain loop: join over a generator costs ~1 µs more
            out += lit
            if name:
                out += values(name)
        return out


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    kind: str  # rule | flow | orphan
    action: Action
    priority: int
    order: int
    fn: Callable[[EvalCtx], Any]
    reason: ReasonTemplate
    source: str  # file:line:col
    learn: bool
    when: str  # CEL source, for explain and diagnostics only
    tools: tuple[str, ...] = ()  # non-empty: rule can only fire for these tool names
    # (clause source, closure) pairs for `policy explain`, lowered on first use
    clauses: Callable[[], tuple[tuple[str, Callable[[EvalCtx], Any]], ...]] = tuple
    # A top-level clause is false unless the call carries a tool definition (its description or
    # pin status): the rule is skipped for calls that carry none (most calls, and every bench).
    needs_definition: bool = False
    # Effects (FACT_BITS) a top-level conjunct requires (`call.writes && ...`): the rule is
    # skipped for calls without them — it is false there, and `false && x` is false even
    # when x would be an error.
    needs: int = 0

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (-self.priority, -self.action.severity, self.order)


READS, WRITES, SPAWNS, NETWORK = 1, 2, 4, 8
# The boolean facts a rule may require as a top-level conjunct, as bits (`for_tool`).
FACT_BITS = {
    "call.reads": READS,
    "call.writes": WRITES,
    "call.spawns": SPAWNS,
    "call.network": NETWORK,
}
ALL_EFFECTS = READS | WRITES | SPAWNS | NETWORK
_MERGED_MAX = 4096


class ArchetypeRules:
    """One archetype's folded rules, in decision order.

    A rule indexed on `call.tool == "x"` is kept only under its tools (`indexed`); the list a
    call of tool x walks is `generic` with x's few rules merged in by priority. That merge is
    built on the first call of x and kept: merging every indexed tool at compile time costs
    tools × generic rules (10,000 rules: ~14 M entries per archetype) for tools never called.
    """

    __slots__ = (
        "const",
        "generic",
        "indexed",
        "flow",
        "orphan",
        "dropped",
        "response",
        "_merged",
    )

    def __init__(
        self,
        const: ArchetypeConst,
        generic: tuple[CompiledRule, ...],
        indexed: Mapping[str, tuple[CompiledRule, ...]],
        flow: tuple[CompiledRule, ...],
        orphan: tuple[CompiledRule, ...],
        dropped: tuple[str, ...],  # rule names folded to `false` for this archetype
        response: tuple[CompiledRule, ...] = (),  # `response rule`s, decision order
    ) -> None:
        self.const = const
        self.generic = generic
        self.indexed = dict(indexed)  # read-only by convention: a plain dict is faster
        self.flow = flow
        self.orphan = orphan
        self.dropped = dropped
        self.response = response
        self._merged: dict[tuple[str | None, bool, int], tuple[CompiledRule, ...]] = {}

    def for_tool(
        self, tool: str, definition: bool, effects: int = ALL_EFFECTS
    ) -> tuple[CompiledRule, ...]:
        """The rules a call of `tool` walks, by priority: without the rules that need a tool
        definition unless the call carries one, nor those that need an effect (FACT_BITS)
        the call does not have. Built on first use and kept (a few lists per tool called)."""
        own = self.indexed.get(tool)
        key = (tool if own is not None else None, definition, effects)
        rules = self._merged.get(key)
        if rules is None:  # a benign race builds the same tuple twice
            if len(self._merged) >= _MERGED_MAX:  # tool names come from the agent: bounded
                self._merged.clear()
            base = _merged(self.generic, own) if own is not None else self.generic
            rules = self._merged[key] = tuple(
                r for r in base if (definition or not r.needs_definition) and not r.needs & ~effects
            )
        return rules

    def every(self) -> tuple[CompiledRule, ...]:
        """Every tool-call rule once, by priority."""
        seen = {r.name: r for rs in (self.generic, *self.indexed.values()) for r in rs}
        return tuple(sorted(seen.values(), key=lambda r: r.sort_key))


def _merged(
    base: tuple[CompiledRule, ...], extra: tuple[CompiledRule, ...]
) -> tuple[CompiledRule, ...]:
    """`base` (sorted) with the few `extra` rules inserted at their place (sort keys are
    unique: they end with the rule's order)."""
    keys = [r.sort_key for r in base]
    out = list(base)
    for r in sorted(extra, key=lambda x: x.sort_key, reverse=True):
        out.insert(bisect.bisect_left(keys, r.sort_key), r)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class InlineTest:
    name: str
    source: str  # file:line:col
    archetype: str
    tool: str
    arguments: Any
    agent: str
    expect: str
    expect_rule: str | None


_FACT_LISTS = {
    "path": "paths",
    "host": "hosts",
    "url": "urls",
    "endpoint": "endpoints",
    "program": "programs",
}


def _call_value(name: str, ctx: EvalCtx, rule: CompiledRule) -> str:
    call = ctx.call
    w = ctx.witness
    if name in w:
        return str(w[name])
    attr = _FACT_LISTS.get(name)
    if name == "path" and "call.written" in w:
        return str(w["call.written"])
    if attr is not None and call is not None:
        key = "call." + attr
        if key in w:
            return str(w[key])
        items = getattr(call, attr)
        return str(items[0]) if items else ""
    if name == "tool":
        return str(call.tool) if call is not None else ""
    if name == "secrets":
        result = getattr(ctx, "result", None)
        return ", ".join(result.secrets) if result is not None else ""
    if name == "command":
        return " ".join(call.commands)[:200] if call is not None else ""
    if name == "archetype":
        return str(ctx.archetype.name)
    if name == "rule":
        return rule.name
    if name == "agent":
        return ctx.agent.id
    flow = ctx.flow
    if flow is not None:
        if name == "port":
            return str(flow.dst_port)
        if name == "dst":
            return f"{flow.host or flow.dst_ip}:{flow.dst_port}"
        if name == "host":
            return flow.host or flow.dst_ip
        if hasattr(flow, name):
            return str(getattr(flow, name))
    if name in ctx.vars:
        return str(ctx.vars[name])
    return "{" + name + "}"


# ---------------------------------------------------------------------------------------------
# Learning mode


class LearningState:
    """When each archetype's learning period started; persisted so restarts don't reset it.

    A runtime passes one to `decide`; replays and `policy eval` don't, so they show what
    enforcement would do.
    """

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._starts: dict[str, float] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                self._starts = {str(k): float(v) for k, v in data.items()}
            except (OSError, ValueError, AttributeError):
                self._starts = {}

    def until(self, archetype: str, period_s: float) -> float:
        start = self._starts.get(archetype)
        if start is None:
            start = self.clock()
            self._starts[archetype] = start
            if self.path is not None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self.path.write_text(json.dumps(self._starts))
                except OSError:
                    pass
        return start + period_s

    def active(self, archetype: str, period_s: float) -> bool:
        return self.clock() < self.until(archetype, period_s)


# ---------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True, slots=True)
class RuleTrace:
    name: str
    kind: str
    action: str
    priority: int
    source: str
    when: str
    status: str  # matched | not matched | error | folded | not indexed | not reached
    detail: str = ""
    clauses: tuple[tuple[str, str], ...] = ()  # (clause source, value)


@dataclass(frozen=True, slots=True)
class Explanation:
    call: ToolCall
    facts: CallFacts | None
    decision: Decision
    rules: tuple[RuleTrace, ...]
    deciding_clause: str = ""
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        f = self.facts
        return {
            "archetype": self.call.archetype,
            "tool": self.call.tool,
            "facts": None
            if f is None
            else {
                "paths": list(f.paths),
                "urls": list(f.urls),
                "hosts": list(f.hosts),
                "endpoints": list(f.endpoints),
                "commands": list(f.commands),
                "programs": list(f.programs),
                "reads": f.reads,
                "writes": f.writes,
                "written": list(f.written),
                "spawns": f.spawns,
                "network": f.network,
            },
            "error": self.error,
            "decision": {**self.decision.to_dict(), "source": self.decision.source},
            "deciding_clause": self.deciding_clause,
            "rules": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "action": r.action,
                    "priority": r.priority,
                    "source": r.source,
                    "status": r.status,
                    "detail": r.detail,
                    "clauses": [{"clause": c, "value": v} for c, v in r.clauses],
                }
                for r in self.rules
            ],
        }


class DecisionTable:
    """Immutable result of compiling a policy set. Safe to share between threads."""

    __slots__ = (
        "version",
        "files",
        "variables",
        "_archetypes",
        "_classifier",
        "_env",
        "_default",
        "_arch_hot",
        "_vars_hot",
        "join",
        "tests",
        "rule_fingerprints",
        "_explainer",
        "summary",
        "_jewels",
        "_listed",
        "timings",
    )

    def __init__(
        self,
        *,
        version: str,
        files: Sequence[str],
        variables: Mapping[str, str],
        archetypes: Mapping[str, ArchetypeRules],
        classifier: Classifier,
        env: Environment,
        default: tuple[Action, str, str],
        join: JoinSpec,
        tests: Sequence[InlineTest],
        rule_fingerprints: Mapping[str, str],
        explainer: Any,
        summary: Mapping[str, Any],
        jewels: Callable[[str], str],
        listed: frozenset[str] = frozenset(),
    ) -> None:
        self.version = version
        self.files = tuple(files)
        self.variables = MappingProxyType(dict(variables))
        self._archetypes = MappingProxyType(dict(archetypes))
        self._arch_hot = dict(archetypes)  # plain dicts on the hot path (faster than proxies)
        self._vars_hot = dict(variables)
        self._classifier = classifier
        self._env = env
        self._default = default
        self.join = join
        self.tests = tuple(tests)
        self.rule_fingerprints = MappingProxyType(dict(rule_fingerprints))
        self._explainer = explainer
        self.summary = MappingProxyType(dict(summary))
        self._jewels = jewels
        self._listed = listed
        # (stage, ms) of the compile that built this table (`policy compile --timings`)
        self.timings: tuple[tuple[str, float], ...] = ()

    # -- introspection
    @property
    def archetypes(self) -> frozenset[str]:
        return frozenset(self._archetypes)

    def archetype(self, name: str) -> ArchetypeConst | None:
        a = self._archetypes.get(name)
        return a.const if a is not None else None

    def rules_for(self, archetype: str) -> ArchetypeRules | None:
        return self._archetypes.get(archetype)

    def jewel(self, path: str) -> str:
        return self._jewels(path)

    def hides(self, rule: str) -> bool:
        """Whether a tool that `rule` refuses whatever the arguments is removed from tool
        lists (every rule but those marked `listed`)."""
        return rule not in self._listed

    def facts(
        self, tool: Any, arguments: Any, annotations: Mapping[str, Any] | None = None
    ) -> CallFacts:
        """The extractor as this table is configured (raises ExtractionError)."""
        return extract(tool, arguments, self._classifier, self._env, annotations)

    # -- decisions
    def _mk(
        self,
        action: Action,
        rule: str,
        reason: str,
        corr: str,
        source: str = "",
        learning: bool = False,
        facts: CallFacts | None = None,
    ) -> Decision:
        return Decision(action, rule, reason, self.version, corr, source, learning, facts)

    def decide(self, call: ToolCall, learning: LearningState | None = None) -> Decision:
        """Decide one tools/call. Never raises: anything unexpected is a deny (fail closed)."""
        try:
            return self._decide(call, learning)
        except Exception as e:  # noqa: BLE001 - the fail-closed boundary
            return self._mk(
                Action.DENY,
                INTERNAL_ERROR,
                f"internal error while deciding: {type(e).__name__}: {e}",
                call.correlation_id,
            )

    def _decide(self, call: ToolCall, learning: LearningState | None) -> Decision:
        arch = self._arch_hot.get(call.archetype)
        if arch is None:
            return self._mk(
                Action.DENY,
                UNKNOWN_ARCHETYPE,
                f"unknown archetype {call.archetype!r}",
                call.correlation_id,
            )
        try:
            facts = extract(
                call.tool, call.arguments, self._classifier, self._env, call.annotations
            )
        except ExtractionError as e:
            return self._mk(Action.DENY, MALFORMED_ARGUMENTS, str(e), call.correlation_id)
        if call.description or call.tool_status:
            facts.description = call.description
            facts.tool_status = call.tool_status
        ctx = EvalCtx(facts, None, call.agent_id, call.session_id, arch.const, self._vars_hot)
        effects = (
            (READS if facts.reads else 0)
            | (WRITES if facts.writes else 0)
            | (SPAWNS if facts.spawns else 0)
            | (NETWORK if facts.network else 0)
        )
        rules = arch.for_tool(facts.tool, bool(call.description or call.tool_status), effects)
        for rule in rules:
            try:
                hit = rule.fn(ctx)
            except TimeoutError as e:  # the CEL run-time budget (cel.CelBudgetExceeded)
                return self._mk(
                    Action.DENY,
                    BUDGET_EXCEEDED,
                    f"rule {rule.name}: {e}",
                    call.correlation_id,
                    rule.source,
                )
            except Exception as e:  # noqa: BLE001 - CEL runtime error: fail closed
                return self._mk(
                    Action.DENY,
                    RULE_ERROR,
                    f"rule {rule.name} could not be evaluated: {e}",
                    call.correlation_id,
                    rule.source,
                )
            if hit is True:
                return self._rule_decision(rule, ctx, arch.const, call.correlation_id, learning)
        action, reason, source = self._default
        return self._mk(action, DEFAULT_RULE, reason, call.correlation_id, source, facts=facts)

    def _rule_decision(
        self,
        rule: CompiledRule,
        ctx: EvalCtx,
        arch: ArchetypeConst,
        corr: str,
        learning: LearningState | None,
    ) -> Decision:
        reason = rule.reason.render(lambda n: _call_value(n, ctx, rule))
        action = rule.action
        if (
            learning is not None
            and rule.learn
            and arch.learn_s
            and action.severity > Action.ALERT.severity
            and learning.active(arch.name, arch.learn_s)
        ):
            until = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(learning.until(arch.name, arch.learn_s))
            )
            return self._mk(
                Action.ALERT,
                rule.name,
                f"learning until {until}, would {action.value}: {reason}",
                corr,
                rule.source,
                learning=True,
                facts=ctx.call,
            )
        return self._mk(action, rule.name, reason, corr, rule.source, facts=ctx.call)

    def has_response_rules(self, archetype: str) -> bool:
        """Whether results of calls under `archetype` must be held and decided."""
        arch = self._archetypes.get(archetype)
        return arch is not None and bool(arch.response)

    def response_reads_text(self, archetype: str) -> bool:
        """Whether a response rule of `archetype` reads `result.text` (else a result that
        cannot hold a secret need not be parsed at all)."""
        arch = self._archetypes.get(archetype)
        return arch is not None and any(
            "result.text" in r.when or "result[" in r.when for r in arch.response
        )

    def decide_response(self, call: ToolCall, result: ResultFacts) -> Decision:
        """Decide one result with `response rule`s (the call that caused it is `call.*`).
        Default: allow. Fails closed: a rule that cannot be evaluated acts as if it matched
        (a `redact` rule that errors still redacts); an internal error denies."""
        try:
            arch = self._archetypes.get(call.archetype)
            if arch is None or not arch.response:
                return self._mk(Action.ALLOW, DEFAULT_RULE, "no response rule", call.correlation_id)
            try:
                facts = extract(
                    call.tool, call.arguments, self._classifier, self._env, call.annotations
                )
            except ExtractionError:
                facts = CallFacts(tool=str(call.tool), args={})
            facts.description = call.description
            facts.tool_status = call.tool_status
            ctx = EvalCtx(facts, None, call.agent_id, call.session_id, arch.const, self.variables)
            ctx.result = result
            for rule in arch.response:
                try:
                    hit = rule.fn(ctx)
                except Exception as e:  # noqa: BLE001 - fail closed: as if it matched
                    return self._mk(
                        rule.action,
                        RULE_ERROR,
                        f"response rule {rule.name} could not be evaluated ({e}); "
                        f"acting as if it matched: {rule.action.value}",
                        call.correlation_id,
                        rule.source,
                    )
                if hit is True:
                    reason = rule.reason.render(partial(_call_value, ctx=ctx, rule=rule))
                    return self._mk(
                        rule.action, rule.name, reason, call.correlation_id, rule.source
                    )
            return self._mk(
                Action.ALLOW, DEFAULT_RULE, "no response rule matched", call.correlation_id
            )
        except Exception as e:  # noqa: BLE001
            return self._mk(
                Action.DENY,
                INTERNAL_ERROR,
                f"internal error while deciding a result: {type(e).__name__}: {e}",
                call.correlation_id,
            )

    def decide_flow(
        self,
        archetype: str,
        flow: FlowFacts,
        orphan: bool,
        agent_id: str = "",
        session_id: str = "",
        correlation_id: str = "",
    ) -> Decision:
        """Decide a network flow with `flow rule`s (or `orphan rule`s). Default: allow.

        Fails closed: a rule that cannot be evaluated counts as the most severe thing it could
        have done (its own action, or whatever the rules after it decide, whichever is worse),
        so a `kill` rule that errors still kills; an unknown archetype or an internal error
        takes the most severe action of any flow (orphan) rule in the table.
        """
        try:
            arch = self._archetypes.get(archetype)
            if arch is None:
                return self._mk(
                    self._worst_flow_action(orphan),
                    UNKNOWN_ARCHETYPE,
                    f"unknown archetype {archetype!r}",
                    correlation_id,
                )
            ctx = EvalCtx(None, flow, agent_id, session_id, arch.const, self.variables)
            failed: Decision | None = None  # the first rule that could not be evaluated
            decision: Decision | None = None
            matched: CompiledRule | None = None
            for rule in arch.orphan if orphan else arch.flow:
                try:
                    hit = rule.fn(ctx)
                except Exception as e:  # noqa: BLE001
                    if failed is None:
                        failed = self._mk(
                            rule.action,
                            RULE_ERROR,
                            f"flow rule {rule.name} could not be evaluated ({e}); "
                            f"acting as if it matched: {rule.action.value}",
                            correlation_id,
                            rule.source,
                        )
                    continue
                if hit is True:
                    matched = rule
                    break
            if matched is not None:
                hit_rule = matched
                reason = hit_rule.reason.render(lambda n: _call_value(n, ctx, hit_rule))
                decision = self._mk(
                    hit_rule.action, hit_rule.name, reason, correlation_id, hit_rule.source
                )
            if decision is None:
                decision = self._mk(
                    Action.ALLOW, DEFAULT_RULE, "no flow rule matched", correlation_id
                )
            if failed is not None and failed.action.severity > decision.action.severity:
                return failed
            return decision
        except Exception as e:  # noqa: BLE001
            return self._mk(
                self._worst_flow_action(orphan),
                INTERNAL_ERROR,
                f"internal error: {e}",
                correlation_id,
            )

    def _worst_flow_action(self, orphan: bool) -> Action:
        """The most severe action any flow (orphan) rule of this table can take (flow rules
        speak allow / alert / kill); at least `alert`: a flow that cannot be decided is flagged."""
        worst = Action.ALERT
        for arch in self._archetypes.values():
            for rule in arch.orphan if orphan else arch.flow:
                if rule.action.severity > worst.severity:
                    worst = rule.action
        return worst

    def explain(self, call: ToolCall) -> Explanation:
        """Every rule considered for this call, which matched and why (not the hot path)."""
        explanation: Explanation = self._explainer(self, call)
        return explanation
