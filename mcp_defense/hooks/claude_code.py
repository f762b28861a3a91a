"""Claude Code's PreToolUse hook: one tool use in, one permission decision out.

The hook maps the tool use to the MCP request a proxy would see (built-in tools to archetypes
of the pack, `mcp__<server>__<tool>` to its server's archetype), builds the call with the one
call builder (`protocol/calls.py`) and decides it with the same DecisionTable as the proxy.
Claude Code lets a tool use through on any exit code other than 0 and 2, so every failure
here is an answer with exit code 2 (blocked, reason on stderr) — never an exception.

This module is what the resident decision process (`hooks/daemon.py`) runs; the policy
modules are imported lazily so the hook's client side never pays for them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_defense.policy.table import DecisionTable, LearningState

EXIT_OK = 0
EXIT_BLOCK = 2  # Claude Code: blocks the tool use and shows stderr to the model

# Built-in tools and the archetype of the built-in pack their arguments are decided under.
# The extractor reads Claude Code's argument names (`command`, `file_path`, `notebook_path`,
# `path`, `url`) as it reads an MCP server's.
BUILTIN_ARCHETYPES: Mapping[str, str] = {
    "Bash": "shell",
    "Read": "filesystem",
    "Write": "filesystem",
    "Edit": "filesystem",
    "MultiEdit": "filesystem",
    "NotebookEdit": "filesystem",
    "NotebookRead": "filesystem",
    "Glob": "filesystem",
    "Grep": "filesystem",
    "LS": "filesystem",
    "WebFetch": "web-fetch",
    "WebSearch": "web-fetch",
}
# Tools that act only inside Claude Code (its task list, plan mode, sub-agents whose own tool
# uses come through this hook again, questions to the user): the hook gives no opinion, so
# Claude Code's own permission flow applies. `--tool-archetype NAME=ARCH` puts one under policy.
AGENT_INTERNAL_TOOLS = frozenset(
    {
        "Task",
        "Agent",
        "TodoWrite",
        "TodoRead",
        "ExitPlanMode",
        "EnterPlanMode",
        "BashOutput",
        "KillShell",
        "KillBash",
        "AskUserQuestion",
        "SlashCommand",
        "Skill",
    }
)
MCP_PREFIX = "mcp__"
DEFAULT_AGENT_ID = "claude-code"


@dataclass(frozen=True, slots=True)
class HookConfig:
    """The hook's command line, as plain values (sent to the resident process as JSON)."""

    policy: tuple[str, ...] = ()  # absolute paths or `builtin:…`; empty = the built-in pack
    sets: tuple[tuple[str, str], ...] = ()
    server_archetypes: tuple[tuple[str, str], ...] = ()
    tool_archetypes: tuple[tuple[str, str], ...] = ()
    record: str = ""  # absolute path of the JSONL recording, or ""
    agent_id: str = DEFAULT_AGENT_ID

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": list(self.policy),
            "sets": [list(kv) for kv in self.sets],
            "server_archetypes": [list(kv) for kv in self.server_archetypes],
            "tool_archetypes": [list(kv) for kv in self.tool_archetypes],
            "record": self.record,
            "agent_id": self.agent_id,
        }

    @classmethod
    def from_json(cls, d: Any) -> HookConfig:
        """Strict: a request the client did not build is refused, not guessed at."""
        if not isinstance(d, dict):
            raise ValueError("config is not an object")

        def strs(key: str) -> tuple[str, ...]:
            v = d.get(key, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"config.{key} must be a list of strings")
            return tuple(v)

        def pairs(key: str) -> tuple[tuple[str, str], ...]:
            v = d.get(key, [])
            ok = isinstance(v, list) and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
                for p in v
            )
            if not ok:
                raise ValueError(f"config.{key} must be a list of [name, value] pairs")
            return tuple((p[0], p[1]) for p in v)

        record, agent = d.get("record", ""), d.get("agent_id", DEFAULT_AGENT_ID)
        if not isinstance(record, str) or not isinstance(agent, str):
            raise ValueError("config.record and config.agent_id must be strings")
        return cls(
            strs("policy"),
            pairs("sets"),
            pairs("server_archetypes"),
            pairs("tool_archetypes"),
            record,
            agent,
        )


@dataclass(frozen=True, slots=True)
class HookResult:
    """What the hook process prints and exits with. `decision` is allow/deny/ask, `pass` (no
    opinion: Claude Code's own flow) or `block` (exit 2)."""

    exit_code: int
    stdout: str
    stderr: str
    decision: str

    def to_json(self) -> dict[str, Any]:
        return {
            "exit": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "decision": self.decision,
        }


def block(reason: str) -> HookResult:
    """Exit 2: Claude Code refuses the tool use and shows the reason to the model."""
    return HookResult(EXIT_BLOCK, "", f"mcp-defense: {reason}\n", "block")


def answer(permission: str, reason: str) -> HookResult:
    import json

    out = {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": permission,
            "permissionDecisionReason": reason,
        }
    }
    return HookResult(EXIT_OK, json.dumps(out, ensure_ascii=False) + "\n", "", permission)


PASS = HookResult(EXIT_OK, "", "", "pass")
# The table's actions in Claude Code's words: approval is Claude Code's own prompt.
PERMISSION = {
    "allow": "allow",
    "alert": "allow",
    "require_approval": "ask",
    "deny": "deny",
    "kill": "deny",
}


def archetype_for(
    tool: str, config: HookConfig, known: frozenset[str]
) -> tuple[str, str] | HookResult:
    """(archetype, tool name as the MCP server knows it), or the answer when there is none."""
    overrides = dict(config.tool_archetypes)
    if tool in overrides:
        return overrides[tool], tool
    if tool in BUILTIN_ARCHETYPES:
        return BUILTIN_ARCHETYPES[tool], tool
    if tool in AGENT_INTERNAL_TOOLS:
        return PASS
    if tool.startswith(MCP_PREFIX):
        server, sep, name = tool[len(MCP_PREFIX) :].partition("__")
        if not sep or not server or not name:
            return block(f"malformed MCP tool name {tool!r} (expected mcp__<server>__<tool>)")
        servers = dict(config.server_archetypes)
        arch = servers.get(server) or (server if server in known else "")
        if not arch:
            return block(
                f"no archetype for MCP server {server!r}: give --server-archetype "
                f"{server}=ARCHETYPE (one of {', '.join(sorted(known))})"
            )
        return arch, name
    return block(f"unknown tool {tool!r}: give --tool-archetype {tool}=ARCHETYPE to decide it")


class TableSource:
    """Compiled tables by (policy files, variables), recompiled when a file's content changes.

    The resident process keeps one for its lifetime; the fingerprint (content hashes of every
    file read, and the `.mcpd` listing of every directory given) is checked on every use, so
    an edited policy is in force on the next tool use.
    """

    def __init__(self, learning_path: str | None = None) -> None:
        self._lock = threading.Lock()
        self._tables: dict[tuple[Any, ...], tuple[str, DecisionTable, list[str]]] = {}
        self._learning_path = learning_path
        self._learning: LearningState | None = None

    @property
    def learning(self) -> LearningState:
        if self._learning is None:
            from pathlib import Path

            from mcp_defense.policy.table import LearningState
            from mcp_defense.resources import state_dir

            path = Path(self._learning_path) if self._learning_path else None
            self._learning = LearningState(path or state_dir() / "learning.json")
        return self._learning

    def get(self, policy: tuple[str, ...], variables: Mapping[str, str]) -> DecisionTable:
        """Raises PolicyLoadError when the policy does not compile."""
        from mcp_defense.policy.loader import PolicyLoadError, load

        key = (policy, tuple(sorted(variables.items())))
        with self._lock:
            hit = self._tables.get(key)
            if hit is not None and _fingerprint(policy, hit[2]) == hit[0]:
                return hit[1]
            result = load(list(policy) or None, variables)
            if result.table is None:
                raise PolicyLoadError(result.diagnostics)
            files = [str(p) for p in result.files]
            if len(self._tables) > 32:  # many workspaces over a long life: start afresh
                self._tables.clear()
            self._tables[key] = (_fingerprint(policy, files), result.table, files)
            return result.table


def _fingerprint(policy: tuple[str, ...], files: list[str]) -> str:
    import hashlib

    from mcp_defense.resources import BUILTIN_PREFIX, builtin_policy_dir

    h = hashlib.sha256()
    for root in policy or (BUILTIN_PREFIX,):
        path = (
            str(builtin_policy_dir() / root[len(BUILTIN_PREFIX) :])
            if root.startswith(BUILTIN_PREFIX)
            else root
        )
        if os.path.isdir(path):
            for dirpath, _dirs, names in sorted(os.walk(path)):
                for n in sorted(names):
                    if n.endswith(".mcpd"):
                        h.update(os.path.join(dirpath, n).encode("utf-8", "surrogateescape"))
    for f in files:
        h.update(f.encode("utf-8", "surrogateescape") + b"\0")
        try:
            with open(f, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
        except OSError:
            h.update(b"missing")
    return h.hexdigest()


class SessionLog:
    """Emits `session_start` the first time a Claude Code session is seen, then each decided
    call (`ToolCallEvent.decided`, as the proxy records it), so `policy test` replays hooks."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def record(self, path: str, events: Callable[[bool], list[Any]], session_id: str) -> None:
        from mcp_defense.events.record import open_recorder

        with self._lock:
            first = (path, session_id) not in self._seen
            self._seen.add((path, session_id))
            recorder = open_recorder(path, live=False)
            try:
                for ev in events(first):
                    recorder.emit(ev)
            finally:
                recorder.close()


def decide_input(
    raw: bytes, config: HookConfig, tables: TableSource, log: SessionLog | None = None
) -> HookResult:
    """The whole hook for one PreToolUse input. Never raises: any failure is a block."""
    try:
        return _decide(raw, config, tables, log or SessionLog())
    except Exception as e:  # noqa: BLE001 - the fail-closed boundary of the hook
        return block(f"internal error, tool use blocked: {type(e).__name__}: {e}")


def _decide(raw: bytes, config: HookConfig, tables: TableSource, log: SessionLog) -> HookResult:
    from mcp_defense.protocol.jsonrpc import JsonFailure, decode_json

    try:
        inp = decode_json(raw)
    except JsonFailure as e:
        return block(f"malformed hook input: {e.message}")
    if not isinstance(inp, dict):
        return block("malformed hook input: not a JSON object")
    event = inp.get("hook_event_name", "PreToolUse")
    if event != "PreToolUse":
        return block(f"this hook decides PreToolUse only, got {event!r}")
    tool, args, cwd = inp.get("tool_name"), inp.get("tool_input"), inp.get("cwd")
    if not isinstance(tool, str) or not tool:
        return block("malformed hook input: no tool_name")
    if not isinstance(args, dict):
        return block(f"malformed hook input: tool_input of {tool} is not an object")
    session_id = inp.get("session_id", "")
    tool_use_id = inp.get("tool_use_id")
    if not isinstance(session_id, str):
        return block("malformed hook input: session_id is not a string")
    variables = dict(config.sets)
    if "workspace" not in variables:
        if not isinstance(cwd, str) or not os.path.isabs(cwd):
            return block("malformed hook input: no absolute cwd (and no --set workspace=…)")
        variables["workspace"] = cwd

    from mcp_defense.policy.loader import PolicyLoadError

    try:
        table = tables.get(config.policy, variables)
    except PolicyLoadError as e:
        errors = [d for d in e.diagnostics if d.is_error] or list(e.diagnostics)
        first = f"{errors[0].span}: {errors[0].message}" if errors else "no diagnostics"
        return block(f"policy does not compile ({len(errors)} error(s); first: {first})")
    mapped = archetype_for(tool, config, table.archetypes)
    if isinstance(mapped, HookResult):
        return mapped
    archetype, name = mapped
    if archetype not in table.archetypes:
        return block(f"{tool}: archetype {archetype!r} is not defined by the policy")

    from mcp_defense.events.model import (
        SessionStart,
        ToolCallEvent,
        new_correlation_id,
    )
    from mcp_defense.protocol.calls import call_from_object

    # The MCP request a proxy in front of this tool would see; the one call builder reads it.
    request = {
        "jsonrpc": "2.0",
        "id": tool_use_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": args},
    }
    built = call_from_object(
        request,
        archetype,
        agent_id=config.agent_id,
        session_id=session_id,
        correlation_id=new_correlation_id(),
    )
    if built.call is None:
        return block(f"{tool}: {built.error}")
    call = built.call
    decision = table.decide(call, tables.learning)
    permission = PERMISSION.get(decision.action.value, "deny")
    rule = decision.rule or "default"
    reason = (
        f"mcp-defense {decision.action.value} ({rule}): {decision.reason} [{call.correlation_id}]"
    )
    if config.record:

        def events(first: bool) -> list[Any]:
            out: list[Any] = []
            if first:
                out.append(
                    SessionStart(
                        session_id=session_id,
                        agent_id=config.agent_id,
                        archetype=archetype,
                        policy_version=decision.policy_version,
                        server_command=["claude-code", "PreToolUse"],
                    )
                )
            out.append(
                ToolCallEvent.decided(
                    call,
                    decision,
                    request_id=tool_use_id,
                    enforced=not decision.learning,
                )
            )
            return out

        log.record(config.record, events, session_id)
    return answer(permission, reason)
