"""procfs source, correlator and kill path with real processes and real loopback sockets.

No timing assertions: every wait polls with a generous timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_defense.correlate import proctree
from mcp_defense.correlate.correlator import Correlator
from mcp_defense.correlate.kill import kill_server
from mcp_defense.correlate.sources.procfs import ProcfsSource
from mcp_defense.events.model import FlowEvent, KillEvent
from mcp_defense.policy.facts import Action, Decision, FlowFacts, JoinSpec

SERVER = r"""
import os, socket, subprocess, sys, time

mode = sys.argv[1]
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
held = list(socket.socketpair())  # unix sockets: never flows, and classified only once

def hold():
    while True:
        time.sleep(1)

if mode == "listen":
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    print(lst.getsockname()[1], flush=True)
    while True:
        conn, _ = lst.accept()
        held.append(conn)

if mode == "spawn-escaped":
    # A child that leaves the process group (setsid), as a daemonising server would.
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         start_new_session=True)
    print(p.pid, flush=True)
    hold()

if mode == "orphan":
    # A child that forks a grandchild and exits at once: the grandchild is orphaned
    # (reparented away from the server) before anyone could see who its parent was.
    if os.fork() == 0:
        if os.fork() == 0:
            print(os.getpid(), flush=True)
            while not os.path.exists(sys.argv[3]):
                time.sleep(0.01)
            held.append(socket.create_connection(("127.0.0.1", port)))
            hold()
        os._exit(0)
    os.wait()
    hold()

if not mode.endswith("-now"):
    sys.stdin.readline()  # "go"

if mode == "spawn":
    p = subprocess.Popen([sys.executable, __file__, "connect-now", str(port), host])
    print(p.pid, flush=True)
    hold()

if mode in ("connect", "connect-now"):
    print(repr(time.time()), flush=True)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.connect((host, port))
    held.append(s)
    hold()

if mode == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.send(b"x")
    held.append(s)
    print("sent", flush=True)
    hold()
"""

KILL = Decision(Action.KILL, "egress_outside_archetype", "network none", "v1")
ALLOW = Decision(Action.ALLOW, "", "allowed", "v1")


def wait_for(pred, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return str(path)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    yield lst
    lst.close()


class Rig:
    """A correlator + procfs source over real processes, recording every event."""

    def __init__(self, verdict: Decision, interval: float = 0.01) -> None:
        self.events: list = []
        self.lock = threading.Lock()
        self.verdict = verdict
        self.decided: list[tuple[FlowFacts, bool]] = []
        self.c = Correlator(JoinSpec(window_s=5.0), self.decide, self.emit)
        self.roots: list[int] = []
        self.source = ProcfsSource(
            lambda: self.roots, interval_s=interval, proctree=self.c.proctree
        )
        self.procs: list[subprocess.Popen] = []

    def decide(self, flow: FlowFacts, orphan: bool) -> Decision:
        self.decided.append((flow, orphan))
        return self.verdict

    def emit(self, ev: object) -> None:
        with self.lock:
            self.events.append(ev)

    def spawn(self, script: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen(
            [sys.executable, script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def flows(self, port: int | None = None) -> list[FlowEvent]:
        with self.lock:
            return [
                e
                for e in self.events
                if isinstance(e, FlowEvent) and (port is None or e.dst_port == port)
            ]

    def kills(self) -> list[KillEvent]:
        with self.lock:
            return [e for e in self.events if isinstance(e, KillEvent)]

    def start(self) -> None:
        self.c.add_source(self.source)
        scans = self.source.scans
        assert wait_for(lambda: self.source.scans > scans + 1)  # the tree is known

    def close(self) -> None:
        self.c.close()
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


@pytest.fixture
def rig_factory() -> Iterator:
    rigs: list[Rig] = []

    def make(verdict: Decision, interval: float = 0.01) -> Rig:
        rigs.append(Rig(verdict, interval))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def go(p: subprocess.Popen) -> str:
    p.stdin.write("go\n")
    p.stdin.flush()
    return p.stdout.readline().strip()


def gone_or_zombie(pid: int) -> bool:
    return not proctree.is_alive(pid)


def test_server_connection_is_joined_and_the_server_killed(script, listener, rig_factory):
    port = listener.getsockname()[1]
    rig = rig_factory(KILL)
    server = rig.spawn(script, "connect", str(port))
    rig.roots.append(server.pid)
    rig.c.register_server(server.pid, cgroup_id=proctree.session_cgroup_id(server.pid))
    rig.c.open_call(
        "tc_call", server_pid=server.pid, cgroup_id=proctree.session_cgroup_id(server.pid)
    )
    rig.start()
    go(server)
    assert wait_for(lambda: rig.kills()), rig.events
    (flow,) = rig.flows(port)
    assert flow.pid == server.pid and flow.dst_ip == "127.0.0.1" and flow.protocol == "tcp"
    assert flow.correlation_ids == ["tc_call"] and not flow.orphan and flow.verdict == "kill"
    assert flow.binary and flow.source == "procfs"
    (kill,) = rig.kills()
    assert kill.server_pid == server.pid and kill.rule == "egress_outside_archetype"
    assert kill.correlation_ids == ["tc_call"] and kill.flow["dst_port"] == port
    assert server.pid in kill.killed_pids and kill.survivors == []
    # Really dead: waitpid reports SIGKILL, and /proc forgets it once reaped.
    assert server.wait(10) == -signal.SIGKILL
    assert not os.path.exists(f"/proc/{server.pid}")


def test_grandchild_connection_is_joined_and_killed(script, listener, rig_factory):
    port = listener.getsockname()[1]
    rig = rig_factory(KILL)
    server = rig.spawn(script, "spawn", str(port))
    rig.roots.append(server.pid)
    rig.c.register_server(server.pid)
    rig.c.open_call("tc_spawn", server_pid=server.pid)
    rig.start()
    child = int(go(server))
    assert wait_for(lambda: rig.kills()), rig.events
    (flow,) = rig.flows(port)
    assert flow.pid == child and flow.correlation_ids == ["tc_spawn"]
    (kill,) = rig.kills()
    assert set(kill.killed_pids) >= {server.pid, child}
    assert server.wait(10) == -signal.SIGKILL
    assert wait_for(lambda: gone_or_zombie(child))


def test_orphaned_grandchild_is_still_the_servers(script, listener, rig_factory, tmp_path):
    """A grandchild reparented away from the server (double fork, no setsid) is still found
    by the session the server leads: joined to the call, and killed with the server."""
    port = listener.getsockname()[1]
    flag = tmp_path / "go"
    rig = rig_factory(KILL)
    server = rig.spawn(script, "orphan", str(port), str(flag))
    rig.roots.append(server.pid)
    rig.c.register_server(server.pid)
    rig.c.open_call("tc_orphan", server_pid=server.pid)
    rig.start()
    grandchild = int(server.stdout.readline())
    # Reparented: its parent is no longer anywhere in the server's tree.
    assert wait_for(
        lambda: proctree.read_stat(grandchild).ppid not in proctree.descendants([server.pid])
    )
    flag.touch()
    assert wait_for(lambda: rig.kills()), rig.events
    (flow,) = rig.flows(port)
    assert flow.pid == grandchild and flow.correlation_ids == ["tc_orphan"]
    (kill,) = rig.kills()
    assert set(kill.killed_pids) >= {server.pid, grandchild} and kill.survivors == []
    assert server.wait(10) == -signal.SIGKILL
    assert wait_for(lambda: gone_or_zombie(grandchild))


def test_unrelated_process_is_an_orphan_and_not_killed(script, listener, rig_factory):
    port = listener.getsockname()[1]
    rig = rig_factory(KILL)
    server = rig.spawn(script, "connect", str(port))
    stranger = rig.spawn(script, "connect", str(port))
    # The source watches both trees, but only the server has a call open.
    rig.roots.extend([server.pid, stranger.pid])
    rig.c.register_server(server.pid)
    rig.c.open_call("tc_call", server_pid=server.pid)
    rig.start()
    go(stranger)
    assert wait_for(lambda: rig.flows(port))
    (flow,) = rig.flows(port)
    assert flow.pid == stranger.pid and flow.orphan and flow.correlation_ids == []
    assert rig.decided[-1][1] is True
    # The kill verdict on an orphan that belongs to no registered server kills nothing.
    assert rig.kills() == []
    assert stranger.poll() is None and server.poll() is None


def test_allowed_connection_passes_and_is_reported_once(script, listener, rig_factory):
    port = listener.getsockname()[1]
    rig = rig_factory(ALLOW)
    server = rig.spawn(script, "connect", str(port))
    rig.roots.append(server.pid)
    rig.c.open_call("tc_ok", server_pid=server.pid)
    rig.start()
    go(server)
    assert wait_for(lambda: rig.flows(port))
    scans = rig.source.scans
    assert wait_for(lambda: rig.source.scans > scans + 10)  # many more polls...
    assert len(rig.flows(port)) == 1  # ...and still one flow per connection
    # Every socket of the server (the unix pair too) is classified: no table is re-read.
    assert rig.source._pending == {}
    assert rig.flows(port)[0].verdict == "allow" and server.poll() is None


def test_inbound_connections_to_the_server_are_not_flows(script, rig_factory):
    rig = rig_factory(ALLOW)
    server = rig.spawn(script, "listen")
    port = int(server.stdout.readline())
    rig.roots.append(server.pid)
    rig.start()
    client = socket.create_connection(("127.0.0.1", port))
    try:
        scans = rig.source.scans
        assert wait_for(lambda: rig.source.scans > scans + 10)
        assert rig.flows() == []
    finally:
        client.close()


def test_connected_udp_is_a_flow(script, rig_factory):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    try:
        rig = rig_factory(ALLOW)
        server = rig.spawn(script, "udp", str(port))
        rig.roots.append(server.pid)
        rig.c.open_call("tc_dns", server_pid=server.pid)
        rig.start()
        go(server)
        assert wait_for(lambda: rig.flows(port))
        (flow,) = rig.flows(port)
        assert flow.protocol == "udp" and flow.correlation_ids == ["tc_dns"]
    finally:
        udp.close()


def test_ipv6_loopback_connection(script, rig_factory):
    try:
        lst = socket.socket(socket.AF_INET6)
        lst.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    lst.listen(8)
    port = lst.getsockname()[1]
    try:
        rig = rig_factory(ALLOW)
        server = rig.spawn(script, "connect", str(port), "::1")
        rig.roots.append(server.pid)
        rig.c.open_call("tc_v6", server_pid=server.pid)
        rig.start()
        go(server)
        assert wait_for(lambda: rig.flows(port))
        (flow,) = rig.flows(port)
        assert flow.dst_ip == "::1" and flow.src_ip == "::1" and flow.correlation_ids == ["tc_v6"]
    finally:
        lst.close()


def test_connection_before_any_call_is_an_orphan_of_the_server(script, listener, rig_factory):
    """The server acting on its own (no call open) is the strongest signal: an orphan,
    and a kill verdict on it still finds the server through its tree."""
    port = listener.getsockname()[1]
    rig = rig_factory(KILL)
    server = rig.spawn(script, "spawn", str(port))
    rig.roots.append(server.pid)
    rig.c.register_server(server.pid)
    rig.start()
    child = int(go(server))
    assert wait_for(lambda: rig.kills()), rig.events
    (flow,) = rig.flows(port)
    assert flow.orphan and flow.pid == child
    assert server.wait(10) == -signal.SIGKILL


def test_source_follows_a_restarted_server_and_stops_cleanly(script, listener, rig_factory):
    port = listener.getsockname()[1]
    rig = rig_factory(ALLOW)
    rig.start()  # no server yet: the source idles
    server = rig.spawn(script, "connect", str(port))
    rig.roots.append(server.pid)
    go(server)
    assert wait_for(lambda: rig.flows(port))
    assert server.pid in rig.source.members
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(10)
    scans = rig.source.scans
    assert wait_for(lambda: rig.source.scans > scans + 2)
    assert server.pid not in rig.source.members  # vanished mid-run: forgotten, no error
    assert rig.source.errors == 0
    rig.c.close()
    assert not rig.source.running


# -- the kill path alone ----------------------------------------------------------------


def test_kill_reaches_children_that_left_the_group(script):
    server = subprocess.Popen(
        [sys.executable, script, "spawn-escaped"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    escaped = int(server.stdout.readline())
    try:
        assert os.getpgid(escaped) != server.pid
        report = kill_server(server.pid)
        assert report.dead and not report.already_dead
        assert set(report.pids) == {server.pid, escaped} and report.pgid == server.pid
        assert server.wait(10) == -signal.SIGKILL
        assert wait_for(lambda: gone_or_zombie(escaped))
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        if proctree.is_alive(escaped):
            os.kill(escaped, signal.SIGKILL)


def test_kill_tolerates_an_already_dead_server(script):
    server = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    server.wait(10)
    report = kill_server(server.pid)
    assert report.already_dead and report.dead and report.pids == ()
    # Dead but not reaped (a zombie) counts as dead too.
    zombie = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    assert wait_for(lambda: gone_or_zombie(zombie.pid))
    assert kill_server(zombie.pid).already_dead
    zombie.wait(10)


def test_kill_never_signals_our_own_group(script):
    """A server started without its own session shares our group: only its tree dies."""
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        report = kill_server(server.pid)
        assert report.pgid == 0 and report.pids == (server.pid,) and report.dead
        assert server.wait(10) == -signal.SIGKILL
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
