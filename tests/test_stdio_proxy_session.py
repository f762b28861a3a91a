"""The sans-IO proxy session (proxy/session.py) and the one call builder (protocol/calls.py).

Unit tests drive `ProxySession` directly (no process: that is the point of it); the process
tests prove the stdio transport keeps traffic flowing while an approval prompt waits, and
the parity tests prove one request is decided the same live, in eval, explain and replay.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.stdio_helpers import RAW_SERVER, Proc, Tty, call, line, read_events
from support.stdio_proxy_mode import cli_cmd, harness_cmd
from typer.testing import CliRunner

from mcp_defense.cli.main import app
from mcp_defense.events.model import Event
from mcp_defense.events.record import Recorder
from mcp_defense.policy.facts import Action, Decision, ToolCall
from mcp_defense.protocol.calls import build_call, call_from_object, near_decided_method
from mcp_defense.protocol.jsonrpc import (
    METHOD_NOT_FOUND,
    POLICY_DENIED,
    SERVER_CLOSED,
)
from mcp_defense.proxy.session import (
    AskApproval,
    Kill,
    ProxySession,
    ToClient,
    ToServer,
)

ALLOWED = ("read_file", {"path": "/workspace/main.py"})
NEEDS_APPROVAL = ("read_file", {"path": "/workspace/app/.env.local"})


class Table:
    version = "t-1"

    def decide(self, c: ToolCall) -> Decision:
        args: Any = c.arguments
        path = str(args.get("path", args.get("uri", ""))) if isinstance(args, dict) else ""
        if ".env" in path:
            return Decision(Action.REQUIRE_APPROVAL, "sensitive", "sensitive", self.version)
        if ".ssh" in path:
            return Decision(Action.DENY, "crown_jewel", "crown jewel", self.version)
        if c.tool == "self_destruct":
            return Decision(Action.KILL, "kill_switch", "boom", self.version)
        return Decision(Action.ALLOW, "", "", self.version)


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


def session(**kw: Any) -> tuple[ProxySession, Sink]:
    sink = Sink()
    s = ProxySession(
        archetype="filesystem",
        get_table=Table,
        recorder=Recorder([sink]),
        **kw,  # type: ignore[list-item]
    )
    return s, sink


def err(actions: list[Any]) -> dict[str, Any]:
    (a,) = [a for a in actions if type(a) is ToClient]
    return json.loads(a.data)["error"]


# --- the session, sans IO ----------------------------------------------------------------


def test_allowed_call_is_forwarded_and_its_response_closes_it():
    s, sink = session()
    raw = line(call(1, *ALLOWED))
    assert s.client_message(raw) == [ToServer(raw, 1)]
    assert s.pending == 1
    resp = b'{"jsonrpc":"2.0","id":1,"result":{}}\n'
    assert s.server_message(resp) == [ToClient(resp, 1)]
    assert s.pending == 0
    assert [e.type for e in sink.events] == ["tool_call", "tool_result"]


def test_approval_is_an_action_and_other_messages_pass_meanwhile():
    s, sink = session(approval=True)
    (ask,) = s.client_message(line(call(1, *NEEDS_APPROVAL)))
    assert type(ask) is AskApproval and ask.decision.rule == "sensitive"
    # While the human thinks: another call, a notification and a ping all go through.
    other = line(call(2, *ALLOWED))
    assert s.client_message(other) == [ToServer(other, 2)]
    note = line({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}})
    assert s.client_message(note) == [ToServer(note)]
    assert s.awaiting_approval == 1
    (fwd,) = s.approval_answered(ask.ticket, True, "approved by user")
    assert type(fwd) is ToServer and fwd.request_id == 1
    assert s.approval_answered(ask.ticket, True, "again") == []  # a ticket is answered once
    decided = [e for e in sink.events if e.type == "tool_call"]
    assert [(e.request_id, e.approval) for e in decided] == [(2, ""), (1, "approved")]


def test_rejected_approval_answers_with_the_deny_body():
    s, _ = s_sink = session(approval=True)
    (ask,) = s.client_message(line(call(7, *NEEDS_APPROVAL)))
    e = err(s.approval_answered(ask.ticket, False, "rejected by user: sensitive"))
    assert e["code"] == POLICY_DENIED and e["data"]["approval"] == "rejected"
    assert e["data"]["rule"] == "sensitive" and e["data"]["reason"].startswith("rejected")
    del s_sink


def test_cancelled_while_awaiting_approval_is_never_forwarded():
    s, sink = session(approval=True)
    (ask,) = s.client_message(line(call(3, *NEEDS_APPROVAL)))
    cancel = line(
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}}
    )
    assert s.client_message(cancel) == [ToServer(cancel)]
    assert s.approval_answered(ask.ticket, True, "approved by user") == []
    (ev,) = [e for e in sink.events if e.type == "tool_call"]
    assert ev.approval == "rejected" and "cancelled" in ev.reason


def test_batch_waits_for_every_approval_then_is_forwarded_whole():
    s, _ = session(approval=True)
    batch = line([call(1, *NEEDS_APPROVAL), call(2, *ALLOWED), call(3, *NEEDS_APPROVAL)])
    asks = s.client_message(batch)
    assert [type(a) for a in asks] == [AskApproval, AskApproval]
    assert s.approval_answered(asks[0].ticket, True, "ok") == []
    assert s.approval_answered(asks[1].ticket, True, "ok") == [ToServer(batch)]
    assert s.pending == 3


def test_batch_with_a_refused_element_asks_no_one():
    s, _ = session(approval=True)
    batch = line([call(1, *NEEDS_APPROVAL), call(2, "read_file", {"path": "/h/.ssh/id"})])
    (answers,) = s.client_message(batch)
    assert type(answers) is ToClient
    errors = {r["id"]: r["error"] for r in json.loads(answers.data)}
    assert errors[2]["data"]["rule"] == "crown_jewel"
    assert "approval not asked" in errors[1]["data"]["reason"]


def test_kill_is_an_action_after_the_answer():
    s, _ = session()
    actions = s.client_message(line(call(1, "self_destruct", {})))
    assert [type(a) for a in actions] == [ToClient, Kill]
    assert actions[1].rule == "kill_switch"


def test_server_gone_fails_pending_and_later_calls_with_results_recorded():
    s, sink = session()
    s.client_message(line(call(1, *ALLOWED)))
    assert err(s.server_gone("mcp-defense: the MCP server exited"))["code"] == SERVER_CLOSED
    later = err(s.client_message(line(call(2, *ALLOWED))))
    assert later["code"] == SERVER_CLOSED and "exited" in later["message"]
    types = [e.type for e in sink.events]
    assert types.count("tool_call") == types.count("tool_result") == 2


def test_server_gone_answers_requests_awaiting_approval():
    s, sink = session(approval=True)
    (ask,) = s.client_message(line(call(1, *NEEDS_APPROVAL)))
    e = err(s.server_gone("mcp-defense: the MCP server exited"))
    assert e["code"] == POLICY_DENIED and "approval moot" in e["data"]["reason"]
    assert s.approval_answered(ask.ticket, True, "late") == []
    (ev,) = [e for e in sink.events if e.type == "tool_call"]
    assert ev.approval == "rejected"


def test_write_failure_answers_and_records_the_result():
    s, sink = session()
    s.client_message(line(call(1, *ALLOWED)))
    assert err(s.server_write_failed(1))["code"] == SERVER_CLOSED
    assert [e.type for e in sink.events] == ["tool_call", "tool_result"]


def test_sessions_share_nothing():
    a, _ = session()
    b, _ = session()
    a.client_message(line(call(1, *ALLOWED)))
    assert a.pending == 1 and b.pending == 0 and a.session_id != b.session_id


@pytest.mark.parametrize(
    "method",
    [
        "Tools/Call",
        "tools/call ",
        " tools/call",
        "TOOLS/CALL",
        "ｔｏｏｌｓ/call",
        "tools/call\u200b",
        "Resources/Read",
        "prompts/get\t",
    ],
)
def test_near_miss_methods_are_refused_not_forwarded(method):
    s, _ = session()
    req = {"jsonrpc": "2.0", "id": 9, "method": method, "params": {"name": "x"}}
    e = err(s.client_message(line(req)))
    assert e["code"] == METHOD_NOT_FOUND and "imitates" in e["message"]
    assert near_decided_method(method) is not None
    note = {"jsonrpc": "2.0", "method": method.replace("prompts/get", "tools/call"), "params": {}}
    if near_decided_method(note["method"]) == "tools/call":
        assert not any(type(a) is ToServer for a in s.client_message(line(note)))


@pytest.mark.parametrize("method", ["tools/list", "initialize", "ping", "resources/list", "x/Y"])
def test_ordinary_methods_are_not_near_misses(method):
    assert near_decided_method(method) is None


# --- one call builder ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, params, tool, arguments",
    [
        ("tools/call", {"name": "t", "arguments": {"a": 1}}, "t", {"a": 1}),
        ("tools/call", {"name": "t"}, "t", {}),
        ("resources/read", {"uri": "file:///x"}, "resources/read", {"uri": "file:///x"}),
        ("resources/subscribe", {"uri": "file:///y"}, "resources/subscribe", {"uri": "file:///y"}),
        (
            "prompts/get",
            {"name": "p", "arguments": {}},
            "prompts/get",
            {"name": "p", "arguments": {}},
        ),
    ],
)
def test_build_call(method, params, tool, arguments):
    c = build_call(method, params, "filesystem")
    assert isinstance(c, ToolCall) and (c.tool, c.arguments) == (tool, arguments)
    lc = call_from_object({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, "fs")
    assert lc.call is not None and (lc.call.tool, lc.call.arguments) == (tool, arguments)


def test_completion_of_a_file_reference_is_decided_as_its_read():
    s, _ = session()
    req = {
        "jsonrpc": "2.0",
        "id": 4,
        "method": "completion/complete",
        "params": {
            "ref": {"type": "ref/resource", "uri": "FILE:///home/u/{d}/id"},
            "argument": {"name": "d", "value": ".ssh"},
        },
    }
    e = err(s.client_message(line(req)))
    assert e["data"]["rule"] == "crown_jewel" and e["data"]["tool"] == "resources/read"
    c = build_call("completion/complete", req["params"], "fs")
    assert isinstance(c, ToolCall) and c.arguments == {"uri": "FILE:///home/u/.ssh/id"}
    # Not about a file: forwarded undecided (a prompt argument completion, an http resource).
    for params in (
        {"ref": {"type": "ref/prompt", "name": "p"}, "argument": {"name": "a", "value": "x"}},
        {"ref": {"type": "ref/resource", "uri": "https://e.example/{x}"}},
    ):
        raw = line({"jsonrpc": "2.0", "id": 5, "method": "completion/complete", "params": params})
        assert s.client_message(raw) == [ToServer(raw, 5)]
    assert near_decided_method("Completion/Complete") == "completion/complete"


def test_build_call_refuses_params_that_are_not_an_object():
    assert build_call("resources/read", ["x"], "fs") == "resources/read params must be an object"
    assert call_from_object({"jsonrpc": "2.0", "method": "tools/list"}, "fs").call is None


# --- the stdio transport: approval does not block other traffic ----------------------------


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


@pytest.fixture
def tty():
    t = Tty()
    yield t
    t.close()


def test_pending_approval_does_not_stall_other_messages(procs, tmp_path, tty):
    log = tmp_path / "server.log"
    p = Proc(
        harness_cmd([*RAW_SERVER, "--log", str(log)], approval_timeout=30),
        tmp_path,
        **tty.popen_kw(),
    )
    procs.append(p)
    p.initialize()
    p.send(call(1, *NEEDS_APPROVAL))
    tty.wait_prompt()
    # The prompt is up and unanswered: a second call and a ping are answered meanwhile.
    assert p.request(call(2, *ALLOWED))["id"] == 2
    assert p.request({"jsonrpc": "2.0", "id": 3, "method": "ping"})["id"] == 3
    p.send(
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": 1, "progress": 1},
        }
    )
    assert p.request(call(4, *ALLOWED))["id"] == 4
    assert "notifications/progress" in log.read_text()
    assert ".env.local" not in log.read_text()
    tty.press(b"a")
    assert "result" in p.recv()
    assert ".env.local" in log.read_text()


def test_cancellation_passes_while_approval_pending(procs, tmp_path, tty):
    log = tmp_path / "server.log"
    p = Proc(
        harness_cmd([*RAW_SERVER, "--log", str(log)], approval_timeout=30),
        tmp_path,
        **tty.popen_kw(),
    )
    procs.append(p)
    p.initialize()
    p.send(call(1, *NEEDS_APPROVAL))
    tty.wait_prompt()
    p.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
    assert p.request({"jsonrpc": "2.0", "id": 2, "method": "ping"})["id"] == 2
    assert "notifications/cancelled" in log.read_text()
    tty.press(b"a")
    assert p.request({"jsonrpc": "2.0", "id": 3, "method": "ping"})["id"] == 3  # no answer to 1
    assert ".env.local" not in log.read_text()


# --- one request, one decision: live, eval, explain, replay ---------------------------------

PARITY = [
    ("tools/call", {"name": "read_file", "arguments": {"path": "/workspace/main.py"}}),
    ("tools/call", {"name": "read_file", "arguments": {"path": "/home/alice/.ssh/id_rsa"}}),
    ("tools/call", {"name": "read_file", "arguments": {"path": "/workspace/app/.env.local"}}),
    ("resources/read", {"uri": "file:///home/alice/.aws/credentials"}),
    ("resources/read", {"uri": "file:///workspace/README.md"}),
    ("resources/subscribe", {"uri": "file:///home/alice/.ssh/id_ed25519"}),
    ("prompts/get", {"name": "review", "arguments": {"file": "/home/alice/.ssh/id_rsa"}}),
    (
        "completion/complete",
        {
            "ref": {"type": "ref/resource", "uri": "file:///home/alice/.ssh/{name}"},
            "argument": {"name": "name", "value": "id_rsa"},
        },
    ),
    (
        "completion/complete",
        {
            "ref": {"type": "ref/resource", "uri": "file:///workspace/{+path}"},
            "argument": {"name": "path", "value": "src/main.py"},
        },
    ),
]
SETS = ["--set", "workspace=/workspace"]


def test_same_request_decides_identically_everywhere(procs, tmp_path):
    requests = [
        {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(PARITY, 1)
    ]
    # live
    rec = tmp_path / "rec.jsonl"
    p = Proc(cli_cmd(RAW_SERVER, "--record", str(rec)), tmp_path)
    procs.append(p)
    p.initialize()
    for r in requests:
        p.request(r)
    p.close_stdin()
    p.wait()
    live = {
        e["request_id"]: (e["decision"], e["rule"])
        for e in read_events(rec)
        if e["type"] == "tool_call"
    }
    assert len(live) == len(requests)
    assert {d for d, _ in live.values()} >= {"allow", "deny", "require_approval"}
    # eval
    src = tmp_path / "calls.jsonl"
    src.write_bytes(b"".join(line(r) for r in requests))
    runner = CliRunner()
    res = runner.invoke(app, ["policy", "eval", "-a", "filesystem", *SETS, str(src)])
    assert res.exit_code == 0, res.output
    evald = {o["id"]: (o["decision"], o["rule"]) for o in map(json.loads, res.output.splitlines())}
    assert evald == live
    # explain
    for r in requests:
        one = tmp_path / f"one-{r['id']}.json"
        one.write_bytes(line(r))
        res = runner.invoke(
            app, ["policy", "explain", "-a", "filesystem", *SETS, "-f", "json", str(one)]
        )
        assert res.exit_code == 0, res.output
        d = json.loads(res.output)["decision"]
        assert (d["decision"], d["rule"]) == live[r["id"]]
    # replay: the transcript with the live decisions as expectations, and the recording
    transcript = tmp_path / "transcript.jsonl"
    transcript.write_bytes(b"".join(line({**r, "expect": live[r["id"]][0]}) for r in requests))
    for path in (transcript, rec):
        res = runner.invoke(app, ["policy", "test", "-a", "filesystem", *SETS, str(path)])
        assert res.exit_code == 0, res.output
