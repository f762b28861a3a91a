"""What the stdio proxy writes about itself: the recording format and its published schema,
the live terminal line, and the approval prompt (in-process, on a real pty)."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from mcp_defense.events.model import (
    EVENT_TYPES,
    FramingEvent,
    KillEvent,
    ServerExit,
    SessionStart,
    ToolCallEvent,
    ToolResultEvent,
    event_from_dict,
    now_iso,
)
from mcp_defense.events.record import (
    JsonlWriter,
    Recorder,
    event_line,
    now_iso_fast,
    open_recorder,
    printable,
)
from mcp_defense.events.recorder import FlightRecorder
from mcp_defense.events.recorder import render as render_timeline
from mcp_defense.events.schema import record_schema, render
from mcp_defense.policy.facts import Action, Decision
from mcp_defense.proxy.approval import Approver

ROOT = Path(__file__).resolve().parents[1]


def sample_events() -> list:
    return [
        SessionStart(
            session_id="ses_1",
            agent_id="claude-code",
            archetype="filesystem",
            policy_version="abc",
            server_command=["npx", "-y", "srv"],
            server_pid=12,
            observe=False,
        ),
        ToolCallEvent(
            correlation_id="tc_1",
            agent_id="claude-code",
            archetype="filesystem",
            tool="read_file",
            arguments={"path": "/home/alice/.aws/credentials", "n": [1, 2.5, None, True]},
            decision="deny",
            rule="crown_jewel",
            reason="crown jewel: x",
            policy_version="abc",
            request_id=7,
        ),
        ToolResultEvent(
            correlation_id="tc_1", request_id=7, is_error=False, duration_ms=1.5, size=120
        ),
        FramingEvent(direction="client->server", reason="invalid JSON", request_id=None, size=4),
        KillEvent(server_pid=12, rule="r", reason="why", correlation_ids=["tc_1"]),
        ServerExit(server_pid=12, returncode=0, pending_requests=0),
    ]


def test_published_schema_is_generated_from_the_model():
    on_disk = (ROOT / "docs" / "record.schema.json").read_text()
    assert on_disk == render(), (
        "regenerate: python -m mcp_defense.events.schema > docs/record.schema.json"
    )
    assert set(record_schema()["$defs"]) == set(EVENT_TYPES)


def test_recorded_lines_validate_and_round_trip(tmp_path):
    validator = jsonschema.Draft202012Validator(record_schema())
    path = tmp_path / "rec.jsonl"
    w = JsonlWriter(str(path))
    events = sample_events()  # one list: each event has its own unique event_id
    for ev in events:
        w.emit(ev)
    w.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(sample_events())
    for raw, ev in zip(lines, events, strict=True):
        obj = json.loads(raw)
        validator.validate(obj)
        assert event_from_dict(obj).to_dict() == {**ev.to_dict(), "ts": obj["ts"]}
    bad = json.loads(lines[1])
    bad["decision"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)


def test_event_line_is_plain_json_of_to_dict():
    for ev in sample_events():
        want = (json.dumps(ev.to_dict(), separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        assert event_line(ev) == want


def test_lone_surrogates_survive_as_escapes():
    ev = ToolCallEvent(
        correlation_id="c",
        agent_id="a",
        archetype="f",
        tool="t",
        arguments={"s": "\ud800"},
        decision="allow",
        rule="",
        reason="",
        policy_version="v",
    )
    line = event_line(ev)
    line.decode("utf-8")  # valid UTF-8 on disk
    assert json.loads(line)["arguments"]["s"] == "\ud800"


def test_fast_timestamp_has_the_model_format():
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
    assert pattern.match(now_iso()) and pattern.match(now_iso_fast())
    assert (
        abs(
            time.mktime(time.strptime(now_iso_fast()[:19], "%Y-%m-%dT%H:%M:%S"))
            - time.mktime(time.strptime(now_iso()[:19], "%Y-%m-%dT%H:%M:%S"))
        )
        <= 1
    )


def test_live_timeline_and_no_terminal_injection():
    evil = ToolCallEvent(
        correlation_id="tc_9\x1b[1m",
        agent_id="a",
        archetype="filesystem",
        tool="read\x1b[2Jfile",
        arguments={"path": "/x\x1b]0;pwned\x07\u202e"},
        decision="deny",
        rule="crown_jewel",
        reason="crown jewel: /x\x1b[31m",
        policy_version="v",
    )
    text = "\n".join(line.plain for line in render_timeline(evil))
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert "DENY" in text and "crown_jewel" in text and "tc_9" in text and "↳" in text
    buf = io.StringIO()
    r = FlightRecorder(buf)
    for ev in sample_events():
        r.emit(ev)
    r.close()
    out = buf.getvalue().splitlines()
    # header, session, call + its reason, refused, killed, exit, summary (no line per result)
    assert len(out) == 8, out
    assert out[0].startswith("time") and "key argument" in out[0]
    assert out[-1].startswith("── 1 call(s): 1 deny") and "1 kill(s)" in out[-1]
    assert printable("ok") == "ok" and printable("a\nb") == "a\\nb"


def test_recorder_without_sinks_is_inactive():
    assert Recorder().active is False
    assert Recorder([FlightRecorder(io.StringIO())]).active is True
    assert any(isinstance(s, FlightRecorder) for s in open_recorder(None, live=True).sinks)
    assert open_recorder(None, live=False).active is False


# --- approval prompt -------------------------------------------------------------------------

DECISION = Decision(
    Action.REQUIRE_APPROVAL, "sensitive_path", "sensitive file: /w/.env", "v1", "tc_1"
)


class Human:
    """Answers the prompt on the pty's master side once it appears."""

    def __init__(self, master: int, keys: bytes) -> None:
        self.master, self.keys, self.seen = master, keys, b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while b"auto-deny" not in self.seen:
            self.seen += os.read(self.master, 4096)
        if self.keys:
            os.write(self.master, self.keys)


@pytest.fixture
def tty_pair():
    master, slave = pty.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.mark.parametrize(
    "keys, approved, remembered",
    [
        (b"a", True, None),
        (b"y", True, None),
        (b"d", False, None),
        (b"n", False, None),
        (b"xA", True, True),
        (b"?D", False, False),
    ],
)
def test_prompt_answers(tty_pair, keys, approved, remembered):
    master, slave_path = tty_pair
    approver = Approver(timeout_s=10, tty_path=slave_path)
    human = Human(master, keys)
    res = approver.ask(
        tool="read_file", arguments={"path": "/w/.env"}, decision=DECISION, correlation_id="tc_1"
    )
    assert res.approved is approved and res.remembered is False
    assert b"sensitive_path" in human.seen and b"/w/.env" in human.seen
    if remembered is not None:  # "for this session": the next call is answered without a prompt
        again = approver.ask(
            tool="read_file", arguments={}, decision=DECISION, correlation_id="tc_2"
        )
        assert (
            again.remembered is True
            and again.approved is remembered
            and "for this session" in again.reason
        )


def test_prompt_timeout_and_missing_terminal(tty_pair, tmp_path):
    master, slave_path = tty_pair
    human = Human(master, b"")
    res = Approver(timeout_s=0.3, tty_path=slave_path).ask(
        tool="t", arguments={}, decision=DECISION, correlation_id="tc_1"
    )
    assert not res.approved and "timed out" in res.reason and DECISION.reason in res.reason
    human.thread.join(1)
    res = Approver(timeout_s=5, tty_path=str(tmp_path / "no-tty")).ask(
        tool="t", arguments={}, decision=DECISION, correlation_id="tc_1"
    )
    assert not res.approved and "no terminal" in res.reason


def test_prompt_escapes_hostile_text(tty_pair):
    master, slave_path = tty_pair
    human = Human(master, b"d")
    hostile = Decision(Action.REQUIRE_APPROVAL, "r", "looks fine\x1b[2K\rALLOWED", "v", "tc")
    Approver(timeout_s=10, tty_path=slave_path).ask(
        tool="x\x1b[8m", arguments={"p": "\x1b[1A"}, decision=hostile, correlation_id="tc"
    )
    prompt = human.seen.split(b"approval required", 1)[1]
    assert b"\x1b[2K" not in prompt and b"\x1b[8m" not in prompt and b"\x1b[1A" not in prompt
