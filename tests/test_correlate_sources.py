"""Flow sources with recorded lines: JSONL (file, growing file, FIFO) and Tetragon export."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from mcp_defense.correlate.correlator import Correlator
from mcp_defense.correlate.proctree import ProcTree
from mcp_defense.correlate.sources import open_source, parse_duration
from mcp_defense.correlate.sources.jsonl import JsonlSource, parse_timestamp
from mcp_defense.correlate.sources.procfs import ProcfsSource, decode_addr
from mcp_defense.correlate.sources.tetragon import TetragonSource
from mcp_defense.policy.facts import Action, Decision, FlowFacts, JoinSpec

DATA = Path(__file__).parent / "data"
FLOWS = DATA / "flows" / "recorded.jsonl"
TETRAGON = DATA / "tetragon" / "connect.jsonl"


def wait_for(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


class Collect:
    def __init__(self) -> None:
        self.flows: list[FlowFacts] = []
        self.names: set[str] = set()
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def sink(self, flow: FlowFacts, name: str) -> None:
        with self.lock:
            self.flows.append(flow)
            self.names.add(name)

    def error(self, msg: str) -> None:
        with self.lock:
            self.errors.append(msg)


def run_to_end(source, col: Collect) -> None:
    source.start(col.sink)
    assert source.wait(10), "a non-following source must end at EOF"


# -- JSONL ------------------------------------------------------------------------------


def test_jsonl_recorded_lines_with_malformed_ones():
    col = Collect()
    src = JsonlSource(str(FLOWS), on_error=col.error, follow=False)
    run_to_end(src, col)
    assert [f.dst_port for f in col.flows] == [443, 443, 53, 8443, 22]
    first, _, v6, mapped, _ = col.flows
    assert (first.src_ip, first.src_port, first.dst_ip, first.protocol) == (
        "10.0.0.5",
        50001,
        "1.2.3.4",
        "tcp",
    )
    assert (first.pid, first.cgroup_id, first.ts) == (4242, 1234567, 1777032000.0)
    assert col.flows[1].cgroup_id == 0 and col.flows[1].pid == 4243
    assert (v6.protocol, v6.dst_ip, v6.src_ip) == ("udp", "2001:4860:4860::8888", "2001:db8::5")
    assert (mapped.dst_ip, mapped.src_port, mapped.protocol) == ("93.184.216.34", 50008, "tcp")
    # Each bad line is reported once, with its line number; the blank line 6 is not an error.
    lines = [int(e.split(":")[len(str(FLOWS).split(":"))]) for e in col.errors]
    assert lines == [3, 4, 5, 7, 9, 10, 12], col.errors
    assert "bad JSON" in col.errors[0]
    assert "dst_port" in col.errors[1] and "70000" in col.errors[2]
    assert "src_ip" in col.errors[3] and "time zone" in col.errors[4]
    assert "not a JSON object" in col.errors[5] and "cgroup_id" in col.errors[6]
    assert src.flows == 5 and src.errors == 7
    assert col.names == {f"jsonl:{FLOWS}"}


def test_jsonl_follows_a_growing_file(tmp_path):
    path = tmp_path / "flows.jsonl"
    lines = FLOWS.read_text().splitlines(keepends=True)
    path.write_text(lines[0])
    col = Collect()
    src = JsonlSource(str(path), on_error=col.error, poll_s=0.01)
    src.start(col.sink)
    try:
        assert wait_for(lambda: len(col.flows) == 1)
        with path.open("a") as f:
            f.write(lines[1][:40])  # half a line: nothing yet
            f.flush()
            time.sleep(0.05)
            assert len(col.flows) == 1
            f.write(lines[1][40:] + lines[2])  # the rest, then a malformed line
        assert wait_for(lambda: len(col.flows) == 2 and len(col.errors) == 1)
        assert col.errors[0].startswith(f"{path}:3:")
        # Truncation (log rotation by copytruncate): read again from the start.
        path.write_text(lines[-1])
        assert wait_for(lambda: len(col.flows) == 3)
        assert col.flows[-1].dst_port == 22
        # Rotation (rename, new file): the old file is drained, then the new one is read.
        with path.open("a") as f:
            f.write(lines[0])
        os.rename(path, tmp_path / "flows.jsonl.1")
        path.write_text(lines[1] + lines[2])
        assert wait_for(lambda: len(col.flows) == 5)
        assert [f.dst_ip for f in col.flows[-2:]] == ["1.2.3.4", "140.82.112.5"]
        assert wait_for(
            lambda: any(e.startswith(f"{path}:2:") for e in col.errors)
        )  # line 2 of the new file
    finally:
        src.stop()
    assert not src.running


def test_jsonl_fifo_survives_writers_coming_and_going(tmp_path):
    fifo = tmp_path / "flows.fifo"
    os.mkfifo(fifo)
    col = Collect()
    src = open_source(str(fifo), server_pid_getter=lambda: None, on_error=col.error)
    assert isinstance(src, JsonlSource)
    src.start(col.sink)
    lines = FLOWS.read_text().splitlines(keepends=True)
    try:
        for batch in (lines[:3], lines[3:]):  # two producers, one after the other
            with open(fifo, "w") as w:  # blocks until the source has the FIFO open
                for line in batch:
                    w.write(line)
                    w.flush()
        assert wait_for(lambda: len(col.flows) == 5 and len(col.errors) == 7), (
            col.flows,
            col.errors,
        )
        assert [int(e.split(":")[len(str(fifo).split(":"))]) for e in col.errors] == [
            3,
            4,
            5,
            7,
            9,
            10,
            12,
        ]
    finally:
        src.stop()
    assert not src.running  # stop() returns even with no writer on the FIFO


def test_jsonl_fifo_without_writer_stops_cleanly(tmp_path):
    fifo = tmp_path / "idle.fifo"
    os.mkfifo(fifo)
    src = JsonlSource(str(fifo))
    src.start(lambda f, n: None)
    time.sleep(0.05)
    src.stop(timeout=5)
    assert not src.running


def test_jsonl_missing_file_is_reported(tmp_path):
    col = Collect()
    run_to_end(JsonlSource(str(tmp_path / "nope.jsonl"), on_error=col.error, follow=False), col)
    assert col.flows == [] and "cannot open" in col.errors[0]


def test_jsonl_waits_for_a_file_that_appears(tmp_path):
    path = tmp_path / "later.jsonl"
    col = Collect()
    src = JsonlSource(str(path), on_error=col.error, poll_s=0.01)
    src.start(col.sink)
    try:
        assert wait_for(lambda: len(col.errors) == 1)
        shutil.copy(FLOWS, path)
        assert wait_for(lambda: len(col.flows) == 5)
    finally:
        src.stop()


def test_jsonl_oversize_line_is_reported_once(tmp_path, monkeypatch):
    from mcp_defense.correlate.sources import jsonl

    monkeypatch.setattr(jsonl, "MAX_LINE", 1000)
    monkeypatch.setattr(jsonl, "_CHUNK", 256)
    path = tmp_path / "big.jsonl"
    good = FLOWS.read_text().splitlines()[0]
    path.write_text(good + "\n" + '{"x": "' + "a" * 5000 + '"}\n' + good + "\n")
    col = Collect()
    run_to_end(JsonlSource(str(path), on_error=col.error, follow=False), col)
    assert len(col.flows) == 2
    assert len(col.errors) == 1 and col.errors[0].startswith(f"{path}:2:")


def test_jsonl_last_line_without_newline_is_read(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text(FLOWS.read_text().splitlines()[0])
    col = Collect()
    run_to_end(JsonlSource(str(path), follow=False), col)
    assert len(col.flows) == 1


def test_jsonl_bad_utf8_is_reported(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"timestamp": "\xff\xfe"}\n' + FLOWS.read_bytes().splitlines()[0] + b"\n")
    col = Collect()
    run_to_end(JsonlSource(str(path), on_error=col.error, follow=False), col)
    assert len(col.flows) == 1 and col.errors[0].startswith(f"{path}:1:")


def test_timestamps():
    assert parse_timestamp("2026-04-24T12:00:00Z") == 1777032000.0
    assert parse_timestamp("2026-04-24T12:00:00.123456789Z") == pytest.approx(1777032000.123456)
    assert parse_timestamp("2026-04-24T14:00:00+02:00") == 1777032000.0
    assert parse_timestamp(1777032000) == 1777032000.0
    assert parse_timestamp(1777032000123) == pytest.approx(1777032000.123)
    assert parse_timestamp(1777032000123456789) == pytest.approx(1777032000.123456789)
    for bad in ("yesterday", "2026-04-24T12:00:00", True, None, [1]):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


# -- Tetragon ---------------------------------------------------------------------------


def test_tetragon_recorded_export():
    col = Collect()
    tree = ProcTree(live=False)
    src = TetragonSource(str(TETRAGON), proctree=tree, on_error=col.error, follow=False)
    run_to_end(src, col)
    got = [(f.pid, f.dst_ip, f.dst_port) for f in col.flows]
    assert got == [
        (4242, "140.82.112.5", 443),
        (4250, "203.0.113.66", 443),
        (4242, "2606:4700:4700::1111", 443),  # IPv6
        (4242, "10.0.0.9", 8080),  # IPv4-mapped IPv6, normalised
        (9999, "140.82.113.3", 22),
    ]
    first = col.flows[0]
    assert (first.src_ip, first.src_port, first.protocol, first.binary) == (
        "10.0.0.5",
        41234,
        "tcp",
        "/usr/bin/node",
    )
    assert first.ts == pytest.approx(parse_timestamp("2026-04-24T12:00:00.123456Z"))
    assert col.flows[2].src_ip == "2001:db8::5"
    assert [int(e.split(":")[len(str(TETRAGON).split(":"))]) for e in col.errors] == [
        6,
        7,
        10,
        12,
        14,
    ], col.errors
    assert "bad JSON" in col.errors[0] and "sock_arg" in col.errors[1]
    assert "10.0.0.999" in col.errors[2] and "pid" in col.errors[4]
    assert src.skipped == 4  # two execs, one tcp_sendmsg, one exit
    # process_exec taught the tree; process_exit forgot the short-lived curl.
    assert tree.parent(4242) == 4200
    assert tree.parent(4250) == 0


def test_tetragon_grandchild_flow_joins_the_server_call():
    """A flow from a process the server spawned joins the server's call through the parent
    links Tetragon's process_exec taught; an unrelated process's flow is an orphan."""
    events: list = []
    c = Correlator(
        JoinSpec(),
        lambda f, o: Decision(Action.ALLOW, "", "", "v"),
        events.append,
        proctree=ProcTree(live=False),
    )
    start = parse_timestamp("2026-04-24T12:00:00Z")
    c.open_call("tc_1", start, server_pid=4242)
    src = open_source(
        f"tetragon:{TETRAGON}",
        server_pid_getter=lambda: 4242,
        proctree=c.proctree,
        on_error=lambda m: None,
        follow=False,
    )
    assert isinstance(src, TetragonSource)
    src.start(c.on_flow)
    assert src.wait(10)
    by_pid = {(e.pid, e.dst_port): e for e in events}
    assert by_pid[(4242, 443)].correlation_ids == ["tc_1"]
    assert by_pid[(4250, 443)].correlation_ids == ["tc_1"]  # grandchild
    assert by_pid[(9999, 22)].orphan
    assert all(e.source == f"tetragon:{TETRAGON}" for e in events)


# -- specs and small parsers ------------------------------------------------------------


def test_open_source_specs(tmp_path):
    getter = lambda: 123  # noqa: E731
    src = open_source("procfs", server_pid_getter=getter)
    assert isinstance(src, ProcfsSource) and src.interval_s == 0.02
    assert src.roots_getter() == [123]
    assert open_source("procfs:50ms", server_pid_getter=getter).interval_s == 0.05
    assert open_source("procfs:0.1", server_pid_getter=getter).interval_s == 0.1
    assert open_source("procfs", server_pid_getter=lambda: None).roots_getter() == []
    assert open_source("procfs", server_pid_getter=lambda: [5, 0, 6]).roots_getter() == [5, 6]
    assert isinstance(open_source(f"jsonl:{tmp_path}/x", server_pid_getter=getter), JsonlSource)
    assert (
        open_source(f"{tmp_path}/x.jsonl", server_pid_getter=getter).name
        == f"jsonl:{tmp_path}/x.jsonl"
    )
    for bad in ("", "procfs:fast", "procfs:0ms", "tetragon:", "jsonl:"):
        with pytest.raises(ValueError):
            open_source(bad, server_pid_getter=getter)
    assert parse_duration("20ms") == 0.02 and parse_duration("1.5s") == 1.5


def test_decode_proc_net_addresses():
    import sys

    if sys.byteorder != "little":
        pytest.skip("the hex samples below are as a little-endian kernel prints them")
    assert decode_addr("0100007F") == "127.0.0.1"
    assert decode_addr("0500000A") == "10.0.0.5"
    assert decode_addr("00000000000000000000000001000000") == "::1"
    assert decode_addr("0000000000000000FFFF00000100007F") == "127.0.0.1"
    assert decode_addr("B80D0120000000000000000001000000") == "2001:db8::1"


def test_tetragon_from_a_fifo(tmp_path):
    """`tetragon export` piped into a FIFO: read as it comes, stopped cleanly."""
    fifo = tmp_path / "tetragon.fifo"
    os.mkfifo(fifo)
    col = Collect()
    src = open_source(
        f"tetragon:{fifo}",
        server_pid_getter=lambda: None,
        on_error=col.error,
        proctree=ProcTree(live=False),
    )
    src.start(col.sink)
    try:
        with open(fifo, "w") as w:
            w.write(TETRAGON.read_text())
        assert wait_for(lambda: len(col.flows) == 5 and len(col.errors) == 5)
    finally:
        src.stop()
    assert not src.running
