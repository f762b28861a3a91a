"""Flow correlation through the real proxy: `mcp-defense stdio --flow-source ...` in front of a
real MCP SDK server (tests/flow_server.py) whose tools open real loopback connections to a
listener this test runs. The correlator's own tests are in test_correlate*.py; these check the
wiring: calls open and close sessions, flows join the right call, a `kill` verdict kills the
server for real, pending calls fail, the proxy exits 1, and the recording tells the story.

No timing assertions: every wait polls with a generous timeout.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.stdio_helpers import TESTS, Proc, call, read_events
from typer.testing import CliRunner

from mcp_defense.cli.main import app
from mcp_defense.correlate import proctree
from mcp_defense.protocol.jsonrpc import SERVER_CLOSED

FLOW_SERVER = [sys.executable, str(TESTS / "support" / "flow_server.py")]
LOOPBACK_POLICY = TESTS / "data" / "flows_loopback.mcpd"
WAIT_S = 60.0
runner = CliRunner()

pytestmark = pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")


def proxy(tmp: Path, rec: Path, *flags: str, archetype: str = "filesystem") -> Proc:
    argv = [
        sys.executable,
        "-m",
        "mcp_defense.cli.main",
        "stdio",
        "--archetype",
        archetype,
        "--set",
        f"workspace={tmp}",
        "--record",
        str(rec),
        *flags,
        "--",
        *FLOW_SERVER,
    ]
    return Proc(argv, tmp)


def wait_for(pred: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def the_call(events: list[dict[str, Any]], tool: str) -> dict[str, Any]:
    (ev,) = [e for e in of_type(events, "tool_call") if e["tool"] == tool]
    return ev


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie nobody reaped yet."""
    st = proctree.read_stat(pid)
    return st is None or st.state in ("Z", "X")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Listener:
    """A loopback TCP listener that accepts and holds every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self._held:
            c.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def assert_killed_story(
    events: list[dict[str, Any]], cid: str, server_pid: int, flow_pid: int | None = None
) -> dict[str, Any]:
    """tool_call -> flow (joined to cid, kill) -> kill (naming cid) -> server_exit(-9)."""
    kinds = [e["type"] for e in events]
    (flow,) = of_type(events, "flow")
    (kill,) = of_type(events, "kill")
    (exit_,) = of_type(events, "server_exit")
    assert flow["correlation_ids"] == [cid] and flow["orphan"] is False
    assert flow["verdict"] == "kill" and flow["rule"] == "egress_outside_archetype"
    assert flow["pid"] == (server_pid if flow_pid is None else flow_pid)
    assert kill["server_pid"] == server_pid and kill["correlation_ids"] == [cid]
    assert kill["rule"] == "egress_outside_archetype" and kill["survivors"] == []
    assert server_pid in kill["killed_pids"]
    assert kill["flow"]["dst_port"] == flow["dst_port"]
    assert exit_["returncode"] == -9 and exit_["pending_requests"] == 1
    assert (
        kinds.index("tool_call")
        < kinds.index("flow")
        < kinds.index("kill")
        < kinds.index("server_exit")
    )
    return flow


# --- procfs ----------------------------------------------------------------------------------


def test_procfs_flow_outside_the_archetype_is_joined_and_the_server_killed(
    tmp_path, listener, procs
):
    rec = tmp_path / "rec.jsonl"
    p = proxy(tmp_path, rec, "--flow-source", "procfs")
    procs.append(p)
    p.initialize()
    server_pid = of_type(read_events(rec), "session_start")[0]["server_pid"]
    reply = p.request(call(1, "connect", {"port": listener.port, "hold_s": 120}), timeout=WAIT_S)
    assert reply["error"]["code"] == SERVER_CLOSED
    assert "killed by policy (egress_outside_archetype)" in reply["error"]["message"]
    assert p.wait(WAIT_S) == 1
    assert gone(server_pid)
    assert listener.accepted == 1  # the connection was real
    events = read_events(rec)
    cid = the_call(events, "connect")["correlation_id"]
    flow = assert_killed_story(events, cid, server_pid)
    assert flow["dst_ip"] == "127.0.0.1" and flow["dst_port"] == listener.port
    assert flow["source"] == "procfs"
    assert "killed server pid" in p.stderr()
    # `record view` tells the same story: the call, its flow under it, the kill.
    view = runner.invoke(app, ["record", "view", str(rec)])
    assert view.exit_code == 0, view.output
    lines = view.output.splitlines()
    at = next(i for i, ln in enumerate(lines) if " connect " in ln)
    assert cid in lines[at] and lines[at + 1].lstrip().startswith("└ flow tcp 127.0.0.1:")
    assert "KILL egress_outside_archetype" in lines[at + 1] and "KILLED" in lines[at + 2]


def test_procfs_flow_from_the_servers_child_kills_the_whole_tree(tmp_path, listener, procs):
    rec = tmp_path / "rec.jsonl"
    p = proxy(tmp_path, rec, "--flow-source", "procfs:10ms")
    procs.append(p)
    p.initialize()
    server_pid = of_type(read_events(rec), "session_start")[0]["server_pid"]
    reply = p.request(
        call(1, "connect", {"port": listener.port, "hold_s": 120, "via_child": True}),
        timeout=WAIT_S,
    )
    assert reply["error"]["code"] == SERVER_CLOSED
    assert p.wait(WAIT_S) == 1
    events = read_events(rec)
    child = of_type(events, "flow")[0]["pid"]
    assert child != server_pid
    assert_killed_story(
        events, the_call(events, "connect")["correlation_id"], server_pid, flow_pid=child
    )
    assert child in of_type(events, "kill")[0]["killed_pids"]
    assert wait_for(lambda: gone(server_pid) and gone(child), what="the tree to be dead")


def test_procfs_flow_the_archetype_allows_passes(tmp_path, listener, procs):
    rec = tmp_path / "rec.jsonl"
    p = proxy(
        tmp_path,
        rec,
        "--policy",
        str(LOOPBACK_POLICY),
        "--flow-source",
        "procfs",
        archetype="loopback-client",
    )
    procs.append(p)
    p.initialize()
    # Held long enough that the 20 ms poll sees the connection while the call is open.
    reply = p.request(call(1, "connect", {"port": listener.port, "hold_s": 1.0}), timeout=WAIT_S)
    assert "error" not in reply and reply["result"]["isError"] is False
    events = wait_for(
        lambda: (ev := read_events(rec)) and of_type(ev, "flow") and ev, what="the flow event"
    )
    (flow,) = of_type(events, "flow")
    assert flow["correlation_ids"] == [the_call(events, "connect")["correlation_id"]]
    assert flow["verdict"] == "allow" and flow["dst_port"] == listener.port
    assert "error" not in p.request(call(2, "pid", {}))  # still serving
    p.close_stdin()
    assert p.wait(WAIT_S) == 0
    assert not of_type(read_events(rec), "kill")


def test_observe_records_the_kill_it_would_have_made_and_kills_nothing(tmp_path, listener, procs):
    rec = tmp_path / "rec.jsonl"
    p = proxy(tmp_path, rec, "--observe", "--flow-source", "procfs")
    procs.append(p)
    p.initialize()
    reply = p.request(call(1, "connect", {"port": listener.port, "hold_s": 1.0}), timeout=WAIT_S)
    assert reply["result"]["isError"] is False
    events = wait_for(
        lambda: (ev := read_events(rec)) and of_type(ev, "flow") and ev, what="the flow event"
    )
    (flow,) = of_type(events, "flow")
    assert flow["correlation_ids"] == [the_call(events, "connect")["correlation_id"]]
    assert flow["verdict"] == "alert" and flow["rule"] == "egress_outside_archetype"
    assert flow["reason"].startswith("--observe, would kill: egress outside")
    p.close_stdin()
    assert p.wait(WAIT_S) == 0
    assert not of_type(read_events(rec), "kill")


def test_a_connection_by_an_unrelated_process_is_not_joined(tmp_path, listener, procs):
    """procfs watches only the server's tree; a pid-bearing source (JSONL) names an
    unrelated pid, which joins no call: an orphan that kills nothing."""
    rec = tmp_path / "rec.jsonl"
    flows = tmp_path / "flows.jsonl"
    flows.write_text("")
    marker = tmp_path / "started"
    p = proxy(tmp_path, rec, "--flow-source", "procfs", "--flow-source", f"jsonl:{flows}")
    procs.append(p)
    p.initialize()
    server_pid = of_type(read_events(rec), "session_start")[0]["server_pid"]
    p.send(call(1, "hold", {"seconds": 1.0, "marker": str(marker)}))
    wait_for(marker.exists, what="the call to reach the server")
    mine = socket.create_connection(("127.0.0.1", listener.port))  # this process, not the server
    with flows.open("a") as f:
        f.write(
            json.dumps(
                {
                    "timestamp": now_iso(),
                    "src_ip": "127.0.0.1",
                    "dst_ip": "203.0.113.9",
                    "src_port": 40000,
                    "dst_port": 443,
                    "protocol": 6,
                    "classification": "UNKNOWN",
                    "action": "PASS",
                    "confidence": 50,
                    "cgroup_id": None,
                    "source_pid": os.getpid(),
                }
            )
            + "\n"
        )
    assert p.recv(WAIT_S)["result"]["isError"] is False  # the server was not killed
    events = wait_for(
        lambda: (ev := read_events(rec)) and of_type(ev, "flow") and ev, what="the JSONL flow"
    )
    (flow,) = of_type(events, "flow")  # the test's own connection is no flow at all
    assert flow["pid"] == os.getpid() and flow["orphan"] is True and flow["correlation_ids"] == []
    assert "error" not in p.request(call(2, "pid", {}))
    p.close_stdin()
    assert p.wait(WAIT_S) == 0
    mine.close()
    events = read_events(rec)
    assert not of_type(events, "kill")
    assert of_type(events, "server_exit")[0] == {
        **of_type(events, "server_exit")[0],
        "server_pid": server_pid,
        "returncode": 0,
    }


# --- JSONL and Tetragon (recorded lines, written while a call is open) ------------------------


def _held_call(p: Proc, rec: Path, marker: Path) -> tuple[int, str]:
    """Start a long call and wait until the server runs it: (server pid, its correlation id)."""
    p.initialize()
    server_pid = of_type(read_events(rec), "session_start")[0]["server_pid"]
    p.send(call(1, "hold", {"seconds": 120, "marker": str(marker)}))
    wait_for(marker.exists, what="the call to reach the server")
    return server_pid, the_call(read_events(rec), "hold")["correlation_id"]


def _expect_kill(p: Proc, rec: Path, server_pid: int, cid: str, flow_pid: int) -> dict[str, Any]:
    reply = p.recv(WAIT_S)
    assert reply["id"] == 1 and reply["error"]["code"] == SERVER_CLOSED
    assert p.wait(WAIT_S) == 1
    assert gone(server_pid)
    return assert_killed_story(read_events(rec), cid, server_pid, flow_pid=flow_pid)


@pytest.mark.parametrize("form", ["jsonl:{}", "{}"])
def test_jsonl_source_joins_a_recorded_line_and_reports_bad_ones(tmp_path, procs, form):
    rec = tmp_path / "rec.jsonl"
    flows = tmp_path / "flows.jsonl"
    flows.write_text("")
    p = proxy(tmp_path, rec, "--flow-source", form.format(flows))
    procs.append(p)
    server_pid, cid = _held_call(p, rec, tmp_path / "started")
    good = {
        "timestamp": now_iso(),
        "src_ip": "10.0.0.5",
        "dst_ip": "1.2.3.4",
        "src_port": 50001,
        "dst_port": 443,
        "protocol": 6,
        "classification": "MALICIOUS",
        "action": "DROP",
        "confidence": 87,
        "cgroup_id": None,
        "source_pid": server_pid,
    }
    with flows.open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({**good, "dst_port": 70000}) + "\n")
        f.write(json.dumps(good) + "\n")
    flow = _expect_kill(p, rec, server_pid, cid, flow_pid=server_pid)
    assert flow["dst_ip"] == "1.2.3.4" and flow["dst_port"] == 443
    err = p.stderr()
    assert f"flow source: {flows}:1:" in err and f"flow source: {flows}:2:" in err


def _unused_pid() -> int:
    pid = 4_000_000
    while Path(f"/proc/{pid}").exists():
        pid -= 1
    return pid


def test_tetragon_source_joins_a_grandchilds_connect_and_reports_bad_lines(tmp_path, procs):
    rec = tmp_path / "rec.jsonl"
    export = tmp_path / "tetragon.log"
    export.write_text("")
    p = proxy(tmp_path, rec, "--flow-source", f"tetragon:{export}")
    procs.append(p)
    server_pid, cid = _held_call(p, rec, tmp_path / "started")
    child = _unused_pid()  # a process Tetragon saw the server start (and we never will)
    proc = {"pid": child, "binary": "/usr/bin/curl", "arguments": "-s https://evil.example/x"}
    lines = [
        "not json at all",
        {
            "process_kprobe": {"process": proc, "function_name": "tcp_connect", "args": [{}]},
            "time": now_iso(),
        },
        {"process_exec": {"process": proc, "parent": {"pid": server_pid}}, "time": now_iso()},
        {
            "process_kprobe": {
                "process": proc,
                "parent": {"pid": server_pid},
                "function_name": "tcp_connect",
                "args": [
                    {
                        "sock_arg": {
                            "family": "AF_INET",
                            "type": "SOCK_STREAM",
                            "protocol": "IPPROTO_TCP",
                            "saddr": "10.0.0.5",
                            "daddr": "93.184.216.34",
                            "sport": 41234,
                            "dport": 443,
                        }
                    }
                ],
            },
            "node_name": "dev",
            "time": now_iso(),
        },
    ]
    with export.open("a") as f:
        for line in lines:
            f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    flow = _expect_kill(p, rec, server_pid, cid, flow_pid=child)
    assert flow["dst_ip"] == "93.184.216.34" and flow["binary"] == "/usr/bin/curl"
    assert flow["source"] == f"tetragon:{export}"
    err = p.stderr()
    assert f"{export}:1: bad JSON" in err and f"{export}:2: bad Tetragon event" in err


# --- the correlation window ------------------------------------------------------------------


@pytest.mark.parametrize("window, joined", [(None, True), ("100ms", False)])
def test_window_decides_whether_a_flow_after_the_answer_still_joins(
    tmp_path, procs, window, joined
):
    """A flow 0.5 s after a call's answer: inside the policy's 5 s window it is that call's;
    with --window 100ms it is an orphan (and, from the server itself, still kills it)."""
    rec = tmp_path / "rec.jsonl"
    flows = tmp_path / "flows.jsonl"
    flows.write_text("")
    extra = ["--window", window] if window else []
    p = proxy(tmp_path, rec, "--flow-source", str(flows), *extra)
    procs.append(p)
    p.initialize()
    server_pid = p.request(call(1, "pid", {}))["result"]["structuredContent"]["result"]
    time.sleep(0.5)  # not an assertion: puts the flow's own timestamp past a 100 ms window
    with flows.open("a") as f:
        f.write(
            json.dumps(
                {
                    "timestamp": now_iso(),
                    "src_ip": "10.0.0.5",
                    "dst_ip": "1.2.3.4",
                    "src_port": 50001,
                    "dst_port": 443,
                    "protocol": 6,
                    "source_pid": server_pid,
                }
            )
            + "\n"
        )
    assert p.wait(WAIT_S) == 1
    events = read_events(rec)
    (flow,) = of_type(events, "flow")
    cid = the_call(events, "pid")["correlation_id"]
    if joined:
        assert flow["correlation_ids"] == [cid] and flow["rule"] == "egress_outside_archetype"
    else:
        assert flow["orphan"] is True and flow["rule"] == "orphan_outside_archetype"
    (kill,) = of_type(events, "kill")
    assert kill["server_pid"] == server_pid and gone(server_pid)


# --- command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--window", "5s"], "--window needs --flow-source"),
        (["--flow-source", "procfs:0ms"], "positive"),
        (["--flow-source", "procfs:soon"], "not a duration"),
        (["--flow-source", "tetragon:"], "needs a path"),
        (["--flow-source", "procfs", "--window", "0s"], "positive"),
        (["--flow-source", "procfs", "--window", "later"], "not a duration"),
    ],
)
def test_bad_flow_flags_are_usage_errors(args, message):
    result = runner.invoke(app, ["stdio", "--archetype", "filesystem", *args, "--", "true"])
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize(
    "spec, message",
    [
        ("prcfs", "did you mean procfs?"),
        ("prcfs:20ms", "unknown flow source scheme"),
        ("tetragn:/var/log/t.log", "unknown flow source scheme"),
        ("/nonexistent/flows.jsonl", "No such file"),
        ("jsonl:/nonexistent/flows.jsonl", "No such file"),
        ("tetragon:/nonexistent/t.log", "No such file"),
        ("/", "not a file or a FIFO"),
    ],
)
def test_flow_source_typos_are_usage_errors(spec, message):
    result = runner.invoke(
        app, ["stdio", "--archetype", "filesystem", "--flow-source", spec, "--", "true"]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_flow_source_fifo_is_accepted(tmp_path):
    fifo = tmp_path / "flows.fifo"
    os.mkfifo(fifo)
    from mcp_defense.proxy.flows import check_flow_spec

    check_flow_spec(str(fifo))
    check_flow_spec(f"jsonl:{fifo}")
    check_flow_spec("procfs:50ms")


def test_flow_source_without_flow_rules_warns(tmp_path):
    policy = tmp_path / "p.mcpd"
    policy.write_text(
        'archetype sandbox {\n  description "test archetype"\n  paths "/sandbox/**"\n'
        "  network none\n  spawn none\n}\n"
    )
    args = ["stdio", "--policy", str(policy), "--archetype", "sandbox", "--flow-source", "procfs"]
    result = runner.invoke(app, [*args, "--", "true"])
    assert "no flow or orphan rule" in result.output
    builtin = runner.invoke(
        app, ["stdio", "--archetype", "filesystem", "--flow-source", "procfs", "--", "true"]
    )
    assert "no flow or orphan rule" not in builtin.output
