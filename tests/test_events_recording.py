"""Recording under faults (issue 12 item 8): whole lines or nothing on a full disk, one warning
per outage, a `recording_gap` event when writing resumes, reopening a deleted or rotated
recording, and `--record-required` denying calls while nothing can be recorded."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from support.stdio_helpers import RAW_SERVER, Proc, call, proxy_argv, read_events

from mcp_defense.events.model import RecordingGap, ToolResultEvent
from mcp_defense.events.record import RECORD_REQUIRED_RULE, JsonlWriter, Recorder
from mcp_defense.protocol.jsonrpc import POLICY_DENIED


def ev(i: int, size: int = 0) -> ToolResultEvent:
    return ToolResultEvent(correlation_id=f"tc_{i}" + "x" * size, request_id=i)


@contextlib.contextmanager
def tiny_tmpfs(tmp_path: Path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    os.close(fd)


def test_full_disk_writes_whole_lines_warns_once_and_records_the_gap(tmp_path):
    with tiny_tmpfs(tmp_path) as mnt:
        rec = mnt / "rec.jsonl"
        warnings: list[str] = []
        w = JsonlWriter(str(rec), warn=warnings.append)
        w.emit(ev(0))
        fill(mnt / "filler")
        for i in range(1, 50):
            w.emit(ev(i, size=3000))  # each crosses into a page the disk does not have
        assert not w.writable
        assert len(warnings) == 1 and "cannot write recording" in warnings[0]
        (mnt / "filler").unlink()
        w.emit(ev(50))
        assert w.writable
        w.close()
        lines = rec.read_bytes().split(b"\n")
        assert lines[-1] == b""  # ends with a whole line
        objs = [json.loads(x) for x in lines[:-1]]  # every line is a whole event
        types = [o["type"] for o in objs]
        assert types.count("recording_gap") == 1 and types[-2:] == ["recording_gap", "tool_result"]
        gap = objs[-2]
        written = [o["request_id"] for o in objs if o["type"] == "tool_result"]
        assert gap["lost"] == 51 - len(written) >= 40  # the disk was full for most of them
        assert gap["path"] == str(rec) and gap["error"] and written[-1] == 50
        assert written == sorted(written)
        assert len(warnings) == 2 and f"{gap['lost']} event(s) were lost" in warnings[1]


def test_dev_full_warns_once_not_once_per_event():
    warnings: list[str] = []
    w = JsonlWriter("/dev/full", warn=warnings.append)
    rec = Recorder([w], required=[w])
    assert rec.writable
    for i in range(500):
        rec.emit(ev(i))
    assert len(warnings) == 1
    assert not rec.writable
    w.close()


def test_deleted_and_rotated_recordings_are_reopened(tmp_path):
    path = tmp_path / "rec.jsonl"
    w = JsonlWriter(str(path), check_every_s=0)  # check on every event
    w.emit(ev(1))
    path.unlink()  # deleted: the next event goes to a new file, not a deleted inode
    w.emit(ev(2))
    assert [e["request_id"] for e in read_events(path)] == [2]
    os.rename(path, tmp_path / "rec.jsonl.1")  # logrotate's default (create mode)
    w.emit(ev(3))
    w.emit(ev(4))
    w.close()
    assert [e["request_id"] for e in read_events(tmp_path / "rec.jsonl.1")] == [2]
    assert [e["request_id"] for e in read_events(path)] == [3, 4]


def test_rotation_is_noticed_within_the_check_interval(tmp_path):
    path = tmp_path / "rec.jsonl"
    w = JsonlWriter(str(path), check_every_s=0.01)
    w.emit(ev(1))
    os.rename(path, tmp_path / "rec.jsonl.1")
    i = 2
    while not path.exists():  # never asserts how soon, only that it happens
        w.emit(ev(i))
        i += 1
        time.sleep(0.001)
    w.close()
    old = [e["request_id"] for e in read_events(tmp_path / "rec.jsonl.1")]
    new = [e["request_id"] for e in read_events(path)]
    assert old + new == list(range(1, i))  # nothing lost across the rotation


def test_gap_event_is_part_of_the_model():
    gap = RecordingGap(lost=3, since="2026-01-01T00:00:00.000000Z")
    assert gap.to_dict()["type"] == "recording_gap"


def test_proxy_on_dev_full_warns_once_and_record_required_denies(tmp_path):
    p = Proc(proxy_argv(RAW_SERVER, "--record", "/dev/full"), tmp_path)
    try:
        p.initialize()
        for i in range(1, 40):
            assert "result" in p.request(call(i, "read_file", {"path": "/workspace/a.py"}))
        p.close_stdin()
        p.wait()
        assert p.stderr().count("cannot write recording") == 1, p.stderr()
    finally:
        p.kill()
    p = Proc(proxy_argv(RAW_SERVER, "--record", "/dev/full", "--record-required"), tmp_path)
    try:
        p.initialize()
        for i in range(1, 5):
            err = p.request(call(i, "read_file", {"path": "/workspace/a.py"}))["error"]
            assert err["code"] == POLICY_DENIED and err["data"]["rule"] == RECORD_REQUIRED_RULE
    finally:
        p.kill()


def test_record_required_allows_again_once_the_recording_is_writable(tmp_path):
    with tiny_tmpfs(tmp_path) as mnt:
        rec = mnt / "rec.jsonl"
        p = Proc(proxy_argv(RAW_SERVER, "--record", str(rec), "--record-required"), tmp_path)
        try:
            p.initialize()
            assert "result" in p.request(call(1, "read_file", {"path": "/workspace/a.py"}))
            fill(mnt / "filler")
            big = {"path": "/workspace/a.py", "pad": "p" * 6000}
            rules = []
            for i in range(2, 60):  # the file's last page has some room left for small events
                reply = p.request(call(i, "read_file", big))
                rules.append(reply.get("error", {}).get("data", {}).get("rule"))
                if rules[-1] == RECORD_REQUIRED_RULE:
                    break
            assert rules[-1] == RECORD_REQUIRED_RULE, rules
            (mnt / "filler").unlink()
            # The next call's deny event is written (with the gap): after it, calls pass.
            replies = [
                p.request(call(100 + i, "read_file", {"path": "/workspace/a.py"})) for i in range(2)
            ]
            assert "result" in replies[-1]
            p.close_stdin()
            p.wait()
            types = [e["type"] for e in read_events(rec)]
            assert "recording_gap" in types
            ids = [e.get("request_id") for e in read_events(rec) if e["type"] == "tool_call"]
            assert 1 in ids and 101 in ids
        finally:
            p.kill()


def test_version_1_lines_still_read():
    from mcp_defense.events.model import event_from_dict

    old = {
        "type": "tool_call",
        "ts": "2026-01-01T00:00:00.000000Z",
        "correlation_id": "tc_1",
        "agent_id": "a",
        "archetype": "filesystem",
        "tool": "read_file",
        "arguments": {"path": "/w/a"},
        "decision": "allow",
        "rule": "",
        "reason": "",
        "policy_version": "v",
    }
    ev = event_from_dict(old)
    assert ev.schema_version == 1 and ev.event_id  # given a fresh id when read
