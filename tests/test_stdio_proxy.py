"""The stdio proxy's framing boundary, over raw pipes, with a server that logs every byte it
receives: each case proves both what the client gets back and what the server never saw.

Most cases share one proxy (the real CLI over the built-in pack): every case ends by showing
that the next message still works, and sharing makes that hold across all of them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support.stdio_helpers import RAW_SERVER, Proc, call, line, read_events
from support.stdio_proxy_mode import cli_cmd

from mcp_defense.events.model import event_from_dict
from mcp_defense.protocol.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    MESSAGE_TOO_LARGE,
    PARSE_ERROR,
    POLICY_DENIED,
)

ALLOWED = ("read_file", {"path": "/workspace/main.py"})
DENIED = ("read_file", {"path": "/home/alice/.aws/credentials"})
NEEDS_APPROVAL = ("read_file", {"path": "/workspace/app/.env.local"})
CEILING = 17 << 20  # --max-message-bytes of the shared proxy: 16 MiB passes, 18 MiB does not


class Session:
    """A running proxy plus the log of what its server received."""

    def __init__(self, proc: Proc, log: Path, rec: Path) -> None:
        self.proc, self.log, self.rec = proc, log, rec
        self.next_id = 10_000

    def received(self) -> list[bytes]:
        return self.log.read_bytes().splitlines(keepends=True) if self.log.exists() else []

    def sync(self) -> int:
        """Round-trip an allowed call; return how many lines the server has received."""
        assert_still_works(self.proc, self.fresh_id())
        return len(self.received())

    def fresh_id(self) -> int:
        self.next_id += 1
        return self.next_id


def start_session(tmp: Path, *flags: str) -> Session:
    log, rec = tmp / "server-received.jsonl", tmp / "rec.jsonl"
    p = Proc(cli_cmd([*RAW_SERVER, "--log", str(log)], "--record", str(rec), *flags), tmp)
    p.initialize()
    return Session(p, log, rec)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    s = start_session(tmp_path_factory.mktemp("shared"), "--max-message-bytes", str(CEILING))
    yield s
    s.proc.kill()


@pytest.fixture
def p(shared) -> Proc:
    return shared.proc


def assert_still_works(p: Proc, rid: int = 999) -> None:
    reply = p.request(call(rid, *ALLOWED))
    assert reply["id"] == rid and "result" in reply, reply


def test_allowed_call_passes_byte_for_byte(shared, p):
    # Odd but valid formatting must reach the server exactly as sent (no re-serialisation).
    raw = b'{ "jsonrpc" : "2.0", "id" : 1, "method" : "tools/call", "params" : {"name":"read_file",\t"arguments":{"path":"/workspace/main.py","x":1.50}} }\n'
    p.send(raw)
    reply = p.recv()
    assert reply["id"] == 1 and json.loads(reply["result"]["content"][0]["text"])["x"] == 1.5
    assert raw in shared.received()


def test_denied_call_never_reaches_server(shared, p):
    mark = shared.sync()
    reply = p.request(call(2, *DENIED))
    err = reply["error"]
    assert reply["id"] == 2 and err["code"] == POLICY_DENIED
    data = err["data"]
    assert data["decision"] == "deny" and data["rule"] == "crown_jewel"
    assert data["correlation_id"].startswith("tc_") and data["policy_version"]
    assert ".aws/credentials" in data["reason"] and "crown" in err["message"]
    assert_still_works(p)
    assert not any(b"credentials" in x for x in shared.received()[mark:])


def test_require_approval_without_approval_flag_is_denied(shared, p):
    mark = shared.sync()
    err = p.request(call(3, *NEEDS_APPROVAL))["error"]
    assert err["code"] == POLICY_DENIED
    assert err["data"]["decision"] == "require_approval" and err["data"]["approval"] == "rejected"
    assert "approval required" in err["data"]["reason"]
    assert_still_works(p)
    assert not any(b".env.local" in x for x in shared.received()[mark:])


@pytest.mark.parametrize(
    "payload, code",
    [
        (b"this is not json\n", PARSE_ERROR),
        (
            b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/w\xff"}}}\n',
            PARSE_ERROR,
        ),
        (
            b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/a","path":"/home/alice/.ssh/id_rsa"}}}\n',
            INVALID_REQUEST,
        ),
        (b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":"read_file"}\n', INVALID_PARAMS),
        (
            b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":["read_file"]}\n',
            INVALID_PARAMS,
        ),
        (b'{"id":5,"method":"tools/call","params":{"name":"read_file"}}\n', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":5,"method":"ping"} trailing\n', PARSE_ERROR),
    ],
    ids=[
        "not-json",
        "invalid-utf8",
        "duplicate-key",
        "params-string",
        "params-array",
        "no-jsonrpc",
        "trailing-data",
    ],
)
def test_malformed_is_answered_never_forwarded(shared, p, payload, code):
    mark = shared.sync()
    p.send(payload)
    reply = p.recv()
    assert reply["error"]["code"] == code, reply
    assert reply["id"] in (5, None)
    if b'"id":5' in payload and b"not json" not in payload:
        assert reply["id"] == 5  # the id is recovered even when the message is unreadable
    assert_still_works(p)
    assert shared.received()[mark:] == [line(call(999, *ALLOWED))]


def test_hundred_thousand_levels_of_nesting(shared, p):
    mark = shared.sync()
    deep = (
        b'{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"read_file","arguments":{"path":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}}}\n"
    )
    reply = p.request(deep)
    assert (
        reply["id"] == 6
        and reply["error"]["code"] == PARSE_ERROR
        and "nesting" in reply["error"]["message"]
    )
    p.send(b"[" * 100_000 + b"\n")  # unclosed, no id
    assert p.recv()["error"]["code"] == PARSE_ERROR
    assert_still_works(p)
    assert shared.received()[mark:] == [line(call(999, *ALLOWED))]


def test_tools_call_notification_is_dropped(shared, p):
    mark = shared.sync()
    note = {
        "jsonrpc": "2.0",
        "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "/workspace/x"}},
    }
    p.send(note)
    assert p.nothing_pending()  # a notification cannot be answered
    assert_still_works(p)
    assert shared.received()[mark:] == [line(call(999, *ALLOWED))]
    refused = [e for e in read_events(shared.rec) if e["type"] == "framing_refused"]
    assert any("notification" in e["reason"] for e in refused)


def test_other_notifications_and_client_responses_pass(shared, p):
    mark = shared.sync()
    msgs = [
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
        {"jsonrpc": "2.0", "id": "srv-1", "result": {"roots": []}},  # answering a server request
        {"jsonrpc": "2.0", "id": "srv-2", "error": {"code": -1, "message": "no"}},
    ]
    for m in msgs:
        p.send(m)
    assert_still_works(p)
    assert shared.received()[mark:] == [*map(line, msgs), line(call(999, *ALLOWED))]


def test_blank_lines_are_not_messages(shared, p):
    mark = shared.sync()
    p.send(b"\n  \r\n\t\n")
    assert p.nothing_pending()
    assert_still_works(p)
    assert shared.received()[mark:] == [line(call(999, *ALLOWED))]


def test_batch_of_allowed_calls_is_forwarded_unchanged(shared, p):
    mark = shared.sync()
    batch = [
        call(10, *ALLOWED),
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}},
        call(11, *ALLOWED),
    ]
    p.send(batch)
    reply = p.recv()
    assert [r["id"] for r in reply] == [10, 11] and all("result" in r for r in reply)
    assert shared.received()[mark:] == [line(batch)]


def test_batch_with_a_denied_call_is_refused_entirely(shared, p):
    mark = shared.sync()
    batch = [
        call(20, *ALLOWED),
        call(21, *DENIED),
        {"jsonrpc": "2.0", "method": "notifications/x"},
        {"jsonrpc": "2.0", "id": 22, "method": "ping"},
        {"jsonrpc": "2.0", "id": "srv-9", "result": {}},  # a response is never answered
    ]
    p.send(batch)
    reply = p.recv()
    assert [r["id"] for r in reply] == [20, 21, 22]
    by_id = {r["id"]: r["error"] for r in reply}
    assert by_id[21]["code"] == POLICY_DENIED and by_id[21]["data"]["rule"] == "crown_jewel"
    assert by_id[20]["code"] == INVALID_REQUEST and "element 1" in by_id[20]["message"]
    assert_still_works(p)
    assert shared.received()[mark:] == [line(call(999, *ALLOWED))]


@pytest.mark.parametrize(
    "batch",
    [
        b'[{"jsonrpc":"2.0","id":30,"method":"ping"},{"jsonrpc":"2.0","method":"tools/call","params":{"name":"read_file","arguments":{}}}]\n',
        b'[{"jsonrpc":"2.0","id":30,"method":"ping"},"junk"]\n',
        b'[{"jsonrpc":"2.0","id":30,"method":"ping"},[{"jsonrpc":"2.0","id":31,"method":"ping"}]]\n',
    ],
    ids=["call-notification-inside", "junk-element", "nested-batch"],
)
def test_batch_with_invalid_element_is_refused(shared, p, batch):
    mark = shared.sync()
    reply = p.request(batch)
    assert [r["id"] for r in reply] == [30] and reply[0]["error"]["code"] == INVALID_REQUEST
    assert_still_works(p)
    assert shared.received()[mark:] == [line(call(999, *ALLOWED))]


def test_empty_batch_is_invalid(p):
    assert p.request(b"[]\n")["error"]["code"] == INVALID_REQUEST
    assert_still_works(p)


def test_oversize_message_is_refused_and_the_stream_resyncs(shared, p):
    mark = shared.sync()
    big = line(
        call(40, "write_file", {"path": "/workspace/big.txt", "content": "z" * (CEILING + 10)})
    )
    p.send(big + line(call(41, *ALLOWED)))
    first, second = p.recv(), p.recv()
    assert first["id"] == 40 and first["error"]["code"] == MESSAGE_TOO_LARGE
    assert second["id"] == 41 and "result" in second
    assert shared.received()[mark:] == [line(call(41, *ALLOWED))]


def test_oversize_server_message_is_replaced_by_an_error(p):
    reply = p.request(call(42, "big_result", {"size": CEILING + 10}), timeout=60)
    assert reply["id"] == 42 and reply["error"]["code"] == MESSAGE_TOO_LARGE
    assert_still_works(p)


def test_16_mib_argument_and_result_pass_intact(p):
    text = '0123456789\u00e9\u4e2d\U0001f600\\"[{' * (
        (16 << 20) // 25 + 1000
    )  # 25 bytes each in JSON
    msg = (json.dumps(call(50, "sha256", {"text": text}), ensure_ascii=False) + "\n").encode()
    assert 16 << 20 < len(msg) < CEILING
    reply = p.request(msg, timeout=60)
    assert reply["result"]["content"][0]["text"] == hashlib.sha256(text.encode()).hexdigest()
    raw = p.request(call(51, "big_result", {"size": 16 << 20}), timeout=60)
    assert len(raw["result"]["content"][0]["text"]) == 16 << 20
    assert_still_works(p)


def test_order_is_preserved_both_ways(shared, p):
    mark = shared.sync()
    sent = []
    blob = b""
    for i in range(100, 300):
        m = call(i, *(DENIED if i % 7 == 0 else ALLOWED))
        sent.append(m)
        blob += line(m)
    p.send(blob)  # pipelined in one write
    ids = [p.recv()["id"] for _ in sent]
    # Denials are answered at once (JSON-RPC matches by id, not position); the server's
    # answers are relayed in the server's order, and so are the proxy's own.
    assert sorted(ids) == [m["id"] for m in sent]
    assert [i for i in ids if i % 7] == [m["id"] for m in sent if m["id"] % 7]
    assert [i for i in ids if not i % 7] == [m["id"] for m in sent if not m["id"] % 7]
    forwarded = shared.received()[mark:]
    assert forwarded == [line(m) for m in sent if m["id"] % 7]


def test_observe_forwards_everything_but_still_refuses_bad_framing(tmp_path):
    s = start_session(tmp_path, "--observe")
    p, rec = s.proc, s.rec
    reply = p.request(call(60, *DENIED))
    assert "result" in reply  # observed, not blocked
    assert line(call(60, *DENIED)) in s.received()
    assert p.request(b"{nope\n")["error"]["code"] == PARSE_ERROR
    p.send(
        {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "read_file", "arguments": {}}}
    )
    assert_still_works(p)
    ev = [e for e in read_events(rec) if e["type"] == "tool_call" and e["request_id"] == 60][0]
    assert ev["decision"] == "deny" and ev["enforced"] is False and ev["rule"] == "crown_jewel"
    assert b'"arguments":{}' not in b"".join(s.received())  # the call notification was dropped
    p.kill()


def test_recording_has_one_valid_event_per_line(tmp_path):
    s = start_session(tmp_path)
    p, rec = s.proc, s.rec
    p.request(call(70, *ALLOWED))
    p.request(call(71, *DENIED))
    p.request(b"garbage\n")
    p.close_stdin()
    assert p.wait() == 0
    events = read_events(rec)
    for e in events:
        event_from_dict(e)  # every line is a valid event of the one family
    types = [e["type"] for e in events]
    assert types[0] == "session_start" and types[-1] == "server_exit"
    calls = {e["request_id"]: e for e in events if e["type"] == "tool_call"}
    for rid, decision in ((70, "allow"), (71, "deny")):
        ev = calls[rid]
        assert (
            ev["decision"] == decision
            and ev["agent_id"] == "test-agent"
            and ev["archetype"] == "filesystem"
        )
        assert (
            ev["tool"] == "read_file"
            and ev["correlation_id"].startswith("tc_")
            and ev["policy_version"]
        )
        assert set(ev) >= {"ts", "arguments", "rule", "reason"}
    result = [e for e in events if e["type"] == "tool_result"]
    assert [r["correlation_id"] for r in result] == [calls[70]["correlation_id"]]
    assert result[0]["is_error"] is False and result[0]["size"] > 0
    assert any(e["type"] == "framing_refused" for e in events)
    # The correlation id in the client's error is the one recorded.
    assert calls[71]["correlation_id"] != calls[70]["correlation_id"]


def test_tools_list_passes_through(p):
    tools = p.request({"jsonrpc": "2.0", "id": 80, "method": "tools/list"})["result"]["tools"]
    assert {t["name"] for t in tools} >= {"read_file", "big_result"}
    assert_still_works(p)


@pytest.mark.parametrize(
    "params",
    [
        {"name": 5, "arguments": {"path": "/workspace/main.py"}},
        {"arguments": {}},
        {"name": "read_file", "arguments": ["/home/alice/.aws/credentials"]},
    ],
    ids=["name-not-string", "no-name", "arguments-not-object"],
)
def test_uninterpretable_call_is_denied_fail_closed(shared, p, params):
    mark = shared.sync()
    reply = p.request({"jsonrpc": "2.0", "id": 90, "method": "tools/call", "params": params})
    assert reply["error"]["code"] == POLICY_DENIED and reply["error"]["data"]["decision"] == "deny"
    assert_still_works(p)
    assert shared.received()[mark:] == [line(call(999, *ALLOWED))]
