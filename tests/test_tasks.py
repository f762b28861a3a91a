"""Task-based tool calls (`tasks/*`) and subscriptions, through the one proxy session.

A task's result is its call's result: it passes the response rules with that call's facts
(redacted exactly as a direct result), is recorded under the call's correlation id and
replays in `policy test`; the call's flow window stays open until the task ends. A task no
allowed call of the session created cannot be reached. End to end with a real `mcp` SDK
server (tests/support/task_server.py) behind the real stdio proxy; unit tests drive the
sans-IO session for what a real server does not show on demand (statuses, ttl, the tasks
extension's inline results, subscriptions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.stdio_helpers import ROOT, Proc, read_events

from mcp_defense.events.model import Event
from mcp_defense.events.record import Recorder
from mcp_defense.policy.facts import Action, Decision, ToolCall
from mcp_defense.protocol.jsonrpc import POLICY_DENIED, SERVER_CLOSED
from mcp_defense.proxy.session import ProxySession, ToClient, ToServer

TASK_SERVER = [sys.executable, str(ROOT / "tests" / "support" / "task_server.py")]
INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


def _req(rid: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


def _leak(rid: int, task: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"name": "leak", "arguments": {"name": "creds.ini"}}
    if task:
        params["task"] = {"ttl": 60000}
    return _req(rid, "tools/call", params)


def _proxy(tmp_path: Path, rec: Path) -> Proc:
    argv = [
        sys.executable,
        "-m",
        "mcp_defense",
        "stdio",
        "-a",
        "generic",
        "--pins",
        str(tmp_path / "pins.json"),
        "--record",
        str(rec),
        "--",
        *TASK_SERVER,
    ]
    return Proc(argv, tmp_path)


def _redacted(text: str) -> None:
    assert "AKIAIOSFODNN7EXAMPLE" not in text and "b3BlbnNzaC1rZXkt" not in text
    assert "[REDACTED:aws_access_key_id]" in text and "[REDACTED:private_key]" in text
    assert "region = eu-west-1" in text and "ok = yes" in text


def test_sdk_server_answers_a_call_as_a_task(tmp_path: Path) -> None:
    """The SDK server runs `leak` as a task: the task's result reaches the client redacted
    like the direct result, is recorded as the call's result, and replays; a task id the
    session never saw created is refused before the server sees it."""
    rec = tmp_path / "rec.jsonl"
    p = _proxy(tmp_path, rec)
    try:
        p.request(INIT)
        p.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        created = p.request(_leak(1, task=True))
        task = created["result"]["task"]
        assert task["status"] == "working"
        tid = task["taskId"]

        foreign = p.request(_req(2, "tasks/result", {"taskId": "task-of-another-agent"}))
        assert foreign["error"]["code"] == POLICY_DENIED
        assert foreign["error"]["data"]["rule"] == "unknown_task"
        assert "no allowed call of this session created it" in foreign["error"]["message"]

        status = p.request(_req(3, "tasks/get", {"taskId": tid}))
        assert status["result"]["status"] == "completed"
        result = p.request(_req(4, "tasks/result", {"taskId": tid}))["result"]
        _redacted(result["content"][0]["text"])
        assert result["_meta"]["io.modelcontextprotocol/related-task"]["taskId"] == tid
        again = p.request(_req(5, "tasks/result", {"taskId": tid}))["result"]
        _redacted(again["content"][0]["text"])  # every fetch is decided

        direct = p.request(_leak(6, task=False))["result"]
        assert direct["content"] == result["content"]  # redacted exactly as a direct result
        listed = p.request(_req(7, "tasks/list", {}))["result"]["tasks"]
        assert [t["taskId"] for t in listed] == [tid]
    finally:
        p.close_stdin()
        p.wait()

    events = read_events(rec)
    calls = [e for e in events if e["type"] == "tool_call"]
    assert [(c["tool"], c["decision"]) for c in calls] == [("leak", "allow"), ("leak", "allow")]
    cid = calls[0]["correlation_id"]
    tasks = [(e["change"], e["status"], e["correlation_id"]) for e in events if e["type"] == "task"]
    assert tasks == [
        ("created", "working", cid),
        ("refused", "", ""),
        ("ended", "completed", cid),
    ]
    responses = [e for e in events if e["type"] == "tool_response"]
    assert [(r["correlation_id"], r["decision"]) for r in responses] == [
        (cid, "redact"),
        (cid, "redact"),
        (calls[1]["correlation_id"], "redact"),
    ]
    assert {"aws_access_key_id", "private_key"} <= set(responses[0]["secrets"])
    results = [e["correlation_id"] for e in events if e["type"] == "tool_result"]
    assert results.count(cid) == 2  # each tasks/result, not the task handle
    assert "AKIAIOSFODNN7EXAMPLE" not in rec.read_text()

    # `policy test` decides the task's result again with the call's facts.
    same = subprocess.run(
        [sys.executable, "-m", "mcp_defense", "policy", "test", str(rec), "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert same.returncode == 0, same.stdout + same.stderr
    report = json.loads(same.stdout)
    [recording] = report["files"]
    assert recording["passed"] == 5 and not report["errors"], recording  # 2 calls, 3 results
    bare = ROOT / "tests" / "data" / "no_response_rules.mcpd"
    other = subprocess.run(
        [sys.executable, "-m", "mcp_defense", "policy", "test", str(rec), "-p", str(bare)],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 1 and "secret_in_result" in other.stdout, other.stdout


# --- the session alone ------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass

    def of(self, etype: str) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.events if e.type == etype]


class Flows:
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def call_opened(self, correlation_id: str) -> None:
        self.log.append(("open", correlation_id))

    def call_closed(self, correlation_id: str) -> None:
        self.log.append(("close", correlation_id))


def _session(table: Any, **kw: Any) -> tuple[ProxySession, Sink, Flows]:
    sink, flows = Sink(), Flows()
    s = ProxySession(
        archetype="generic",
        get_table=lambda: table,
        recorder=Recorder([sink]),
        flows=flows,
        **kw,
    )
    return s, sink, flows


def _line(obj: Any) -> bytes:
    return (json.dumps(obj) + "\n").encode()


def _answer(rid: int, result: Any) -> bytes:
    return _line({"jsonrpc": "2.0", "id": rid, "result": result})


def _to_client(actions: list[Any]) -> dict[str, Any]:
    (a,) = [a for a in actions if type(a) is ToClient]
    return json.loads(a.data)  # type: ignore[no-any-return]


def _start_task(s: ProxySession, flows: Flows, handle: dict[str, Any]) -> str:
    actions = s.client_message(_line(_leak(1, task=True)))
    assert [type(a) for a in actions] == [ToServer]
    [(_, cid)] = flows.log
    s.server_message(_answer(1, handle))
    assert flows.log == [("open", cid)]  # the handle is not the result: the window stays open
    return cid


TASK = {"taskId": "t1", "status": "working", "ttl": 60000, "createdAt": "x", "lastUpdatedAt": "x"}
SECRET = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE"


def test_window_stays_open_until_the_task_ends(builtin_table: Any) -> None:
    s, sink, flows = _session(builtin_table)
    cid = _start_task(s, flows, {"task": TASK})
    s.client_message(_line(_req(2, "tasks/get", {"taskId": "t1"})))
    s.server_message(_answer(2, {**TASK, "status": "input_required"}))
    assert flows.log == [("open", cid)]
    s.server_message(
        _line({"jsonrpc": "2.0", "method": "notifications/tasks/status", "params": TASK})
    )
    assert flows.log == [("open", cid)]
    s.server_message(
        _line(
            {
                "jsonrpc": "2.0",
                "method": "notifications/tasks/status",
                "params": {**TASK, "status": "completed"},
            }
        )
    )
    assert flows.log == [("open", cid), ("close", cid)]
    # Fetching the result later does not close the window twice.
    s.client_message(_line(_req(3, "tasks/result", {"taskId": "t1"})))
    s.server_message(_answer(3, {"content": [{"type": "text", "text": "done"}]}))
    assert flows.log == [("open", cid), ("close", cid)]
    changes = [(e["change"], e["status"], e["method"]) for e in sink.of("task")]
    assert changes == [
        ("created", "working", "tools/call"),
        ("status", "input_required", "tasks/get"),
        ("status", "working", "notifications/tasks/status"),
        ("ended", "completed", "notifications/tasks/status"),
    ]


def test_cancel_ends_the_task_and_server_exit_closes_open_ones(builtin_table: Any) -> None:
    s, sink, flows = _session(builtin_table)
    cid = _start_task(s, flows, {"task": TASK})
    s.client_message(_line(_req(2, "tasks/cancel", {"taskId": "t1"})))
    s.server_message(_answer(2, {**TASK, "status": "cancelled"}))
    assert flows.log == [("open", cid), ("close", cid)]

    s, sink, flows = _session(builtin_table)
    cid = _start_task(s, flows, {"task": TASK})
    s.client_message(_line(_req(2, "tasks/result", {"taskId": "t1"})))
    actions = s.server_gone("the server exited")
    assert _to_client(actions)["id"] == 2
    assert flows.log == [("open", cid), ("close", cid)]
    assert [e["change"] for e in sink.of("task")] == ["created", "expired"]
    again = _to_client(s.client_message(_line(_req(3, "tasks/get", {"taskId": "t1"}))))
    assert again["error"]["code"] == SERVER_CLOSED


def test_ttl_closes_the_window_of_an_abandoned_task(builtin_table: Any) -> None:
    s, sink, flows = _session(builtin_table)
    cid = _start_task(s, flows, {"task": {**TASK, "ttl": 0}})
    # Any message sweeps: this one finds the task forgotten.
    gone = _to_client(s.client_message(_line(_req(2, "tasks/get", {"taskId": "t1"}))))
    assert gone["error"]["data"]["rule"] == "unknown_task" and "expired" in gone["error"]["message"]
    assert flows.log == [("open", cid), ("close", cid)]
    [created, expired, refused] = sink.of("task")
    assert created["ttl_ms"] == 0 and expired["change"] == "expired"
    assert expired["reason"] == "its ttl passed" and refused["change"] == "refused"


def test_tasks_extension_inline_result_is_decided(builtin_table: Any) -> None:
    """The 2026-07-28 tasks extension: `resultType: "task"` handle, the result inline in
    tasks/get; the secret is redacted there as in a direct result."""
    s, sink, flows = _session(builtin_table)
    handle = {"resultType": "task", "taskId": "t1", "status": "working", "ttlMs": 60000}
    cid = _start_task(s, flows, handle)
    s.client_message(_line(_req(2, "tasks/get", {"taskId": "t1"})))
    done = {
        "resultType": "complete",
        "taskId": "t1",
        "status": "completed",
        "result": {"content": [{"type": "text", "text": SECRET}], "isError": False},
    }
    out = _to_client(s.server_message(_answer(2, done)))
    text = out["result"]["result"]["content"][0]["text"]
    assert "AKIA" not in text and "[REDACTED:aws_access_key_id]" in text
    assert out["result"]["status"] == "completed"
    assert flows.log == [("open", cid), ("close", cid)]
    [decided] = sink.of("tool_response")
    assert decided["correlation_id"] == cid and decided["decision"] == "redact"
    assert [e["correlation_id"] for e in sink.of("tool_result")] == [cid]


def test_tasks_of_denied_calls_or_other_sessions_cannot_be_reached(builtin_table: Any) -> None:
    s, sink, flows = _session(builtin_table)
    _start_task(s, flows, {"task": TASK})
    other, _, _ = _session(builtin_table)  # another session of the same server
    for method in ("tasks/get", "tasks/result", "tasks/cancel", "tasks/update"):
        denied = _to_client(other.client_message(_line(_req(9, method, {"taskId": "t1"}))))
        assert denied["error"]["code"] == POLICY_DENIED, method
    bad = _to_client(other.client_message(_line(_req(9, "tasks/result", {"taskId": 1}))))
    assert bad["error"]["data"]["rule"] == "unknown_task"
    # A batch cannot smuggle one past the check.
    batch = [_req(10, "tasks/result", {"taskId": "t1"}), _req(11, "ping", {})]
    answers = json.loads(s.client_message(_line(batch))[0].data)  # type: ignore[union-attr]
    assert all("error" in a for a in answers)
    # --observe refuses nothing: the request goes on, the refusal is recorded.
    watcher, wsink, _ = _session(builtin_table, observe=True)
    actions = watcher.client_message(_line(_req(9, "tasks/result", {"taskId": "t1"})))
    assert [type(a) for a in actions] == [ToServer]
    [ev] = wsink.of("task")
    assert ev["change"] == "refused" and ev["enforced"] is False


def test_a_server_request_is_not_taken_for_an_answer(builtin_table: Any) -> None:
    """A server→client request whose id equals a pending client request's passes to the
    client and leaves that request pending (its real answer still comes)."""
    s = ProxySession(archetype="generic", get_table=lambda: builtin_table)
    s.client_message(_line(_req(1, "tools/list", {})))
    actions = s.server_message(_line(_req(1, "roots/list", {})))
    assert [type(a) for a in actions] == [ToClient] and actions[0].request_id is None
    assert s.pending == 1


class JewelTable:
    """Denies what names ~/.ssh, allows the rest (the built-in pack's `archetype_no_network`
    also refuses a file:// URI with no host, which would hide what this test shows)."""

    version = "t-1"

    def decide(self, c: ToolCall) -> Decision:
        if ".ssh" in json.dumps(c.arguments):
            return Decision(Action.DENY, "crown_jewel", "crown jewel", self.version)
        return Decision(Action.ALLOW, "", "", self.version)


def test_listen_subscriptions_are_decided_and_updates_recorded() -> None:
    s, sink, _ = _session(JewelTable())
    jewel = "file:///home/alice/.ssh/id_ed25519"
    listen = _req(
        1,
        "subscriptions/listen",
        {"notifications": {"resourceSubscriptions": [jewel], "toolsListChanged": True}},
    )
    denied = _to_client(s.client_message(_line(listen)))
    assert (
        denied["error"]["code"] == POLICY_DENIED
        and "subscriptions/listen" in denied["error"]["message"]
    )
    [call] = sink.of("tool_call")
    assert call["tool"] == "resources/subscribe" and call["decision"] == "deny"
    assert call["arguments"] == {"uri": jewel}

    ok_uri = "file:///workspace/README.md"
    listen["params"]["notifications"]["resourceSubscriptions"] = [ok_uri]
    assert [type(a) for a in s.client_message(_line(listen))] == [ToServer]
    meta = {"io.modelcontextprotocol/subscriptionId": 1}
    for note in (
        {
            "method": "notifications/subscriptions/acknowledged",
            "params": {"_meta": meta, "notifications": {"resourceSubscriptions": [ok_uri]}},
        },
        {"method": "notifications/resources/updated", "params": {"_meta": meta, "uri": ok_uri}},
    ):
        actions = s.server_message(_line({"jsonrpc": "2.0", **note}))
        assert [type(a) for a in actions] == [ToClient]
    s.server_message(_answer(1, {"resultType": "complete"}))
    subs = [(e["change"], e["request_id"], e["uri"]) for e in sink.of("subscription")]
    assert subs == [
        ("listen", 1, ""),
        ("acknowledged", 1, ""),
        ("resource_updated", 1, ok_uri),
        ("closed", 1, ""),
    ]


@pytest.mark.parametrize("handle", [{"task": {"status": "working"}}, {"resultType": "task"}])
def test_a_handle_without_an_id_is_an_ordinary_result(builtin_table: Any, handle: Any) -> None:
    s, sink, flows = _session(builtin_table)
    s.client_message(_line(_leak(1, task=True)))
    s.server_message(_answer(1, {**handle, "taskId": 5}))
    assert [x for x, _ in flows.log] == ["open", "close"]
    assert not sink.of("task")


def test_sessionless_http_requests_share_their_tasks(builtin_table: Any) -> None:
    """2026-07-28 over HTTP has no session: a task created by one request is fetched by a
    later one, each given its own ProxySession by the hub. A session the upstream names
    (`adopt`) keeps its tasks to itself."""
    from mcp_defense.proxy.web import HubConfig, SessionHub

    hub = SessionHub(HubConfig("generic", lambda: builtin_table, "http://up", "http"))
    first, second = hub.new(), hub.new()
    first.session.client_message(_line(_leak(1, task=True)))
    first.session.server_message(_answer(1, {"task": TASK}))
    fetch = _line(_req(2, "tasks/result", {"taskId": "t1"}))
    assert [type(a) for a in second.session.client_message(fetch)] == [ToServer]
    out = _to_client(
        second.session.server_message(_answer(2, {"content": [{"type": "text", "text": SECRET}]}))
    )
    assert "[REDACTED:aws_access_key_id]" in out["result"]["content"][0]["text"]
    named = hub.new()
    hub.adopt(named, "mcp-session-1")
    denied = _to_client(named.session.client_message(fetch))
    assert denied["error"]["data"]["rule"] == "unknown_task"
    assert "of this session" in denied["error"]["message"]


def test_batched_results_pass_response_rules(builtin_table: Any) -> None:
    """A batch of calls (2025-03-26 era) answered by a batch: each result is decided like a
    direct one (it passed undecided before), the rest of the batch is kept, in order."""
    s, sink, flows = _session(builtin_table)
    batch = [_req(1, "tools/call", {"name": "leak", "arguments": {}}), _req(2, "ping", {})]
    batch.append(_req(3, "tools/call", {"name": "echo", "arguments": {"text": "hi"}}))
    actions = s.client_message(_line(batch))
    assert [type(a) for a in actions] == [ToServer]
    answer = [
        {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": SECRET}]}},
        {"jsonrpc": "2.0", "id": 2, "result": {}},
        {"jsonrpc": "2.0", "id": 3, "result": {"content": [{"type": "text", "text": "hi"}]}},
    ]
    [out] = [a for a in s.server_message(_line(answer)) if type(a) is ToClient]
    got = json.loads(out.data)
    assert [e["id"] for e in got] == [1, 2, 3]
    text = got[0]["result"]["content"][0]["text"]
    assert "AKIA" not in text and "[REDACTED:aws_access_key_id]" in text, text
    assert got[1:] == answer[1:]
    assert [e["decision"] for e in sink.of("tool_response")] == ["redact"]
    assert len(sink.of("tool_result")) == 2
    assert not s._pending  # every request of the batch is answered
