"""The proxy as a process: exit codes, signals, server death, client EOF, kill decisions,
stderr pass-through and the /dev/tty approval prompt (driven through a real pty).

Policy-dependent cases run the real CLI; pure process behaviour runs the same StdioProxy
through the fast-starting harness (see stdio_proxy_mode)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.stdio_helpers import RAW_SERVER, TIMEOUT, Proc, Tty, call, child_env, line, read_events
from support.stdio_proxy_mode import cli_cmd, harness_cmd

from mcp_defense.protocol.jsonrpc import POLICY_DENIED, SERVER_CLOSED

ALLOWED = ("read_file", {"path": "/workspace/main.py"})
NEEDS_APPROVAL = ("read_file", {"path": "/workspace/app/.env.local"})


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def start(procs: list[Proc], tmp: Path, argv: list[str], **popen) -> Proc:
    p = Proc(argv, tmp, **popen)
    procs.append(p)
    return p


def logged_server(tmp: Path) -> tuple[list[str], Path]:
    log = tmp / "server.log"
    return [*RAW_SERVER, "--log", str(log)], log


def wait_for(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_server_exit_code_is_propagated_and_pending_requests_get_errors(procs, tmp_path):
    server, _ = logged_server(tmp_path)
    rec = tmp_path / "rec.jsonl"
    p = start(procs, tmp_path, cli_cmd(server, "--record", str(rec)))
    p.initialize()
    p.send(call(1, "hang", {}))
    p.send(call(2, "hang", {}))
    p.send(call(3, "stop_server", {"status": 3}))
    replies = {r["id"]: r for r in (p.recv(), p.recv(), p.recv())}
    assert set(replies) == {1, 2, 3}
    assert all(r["error"]["code"] == SERVER_CLOSED for r in replies.values())
    assert "exited (code 3)" in replies[1]["error"]["message"]
    assert p.wait() == 3
    exit_ev = [e for e in read_events(rec) if e["type"] == "server_exit"]
    assert exit_ev and exit_ev[0]["returncode"] == 3 and exit_ev[0]["pending_requests"] == 3


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_are_forwarded_to_the_server(procs, tmp_path, signum):
    server, log = logged_server(tmp_path)
    p = start(procs, tmp_path, harness_cmd(server))
    p.initialize()
    p.request(call(1, *ALLOWED))  # the server is up and has its handlers installed
    p.proc.send_signal(signum)
    assert p.wait() == 42 + signum  # the server's own exit code, not the signal's
    assert f"SIGNAL {int(signum)}" in log.read_text()


def test_client_eof_closes_server_stdin(procs, tmp_path):
    server, log = logged_server(tmp_path)
    p = start(procs, tmp_path, harness_cmd(server))
    p.initialize()
    p.close_stdin()
    assert p.wait() == 0  # the server saw EOF and exited by itself
    assert "SIGNAL" not in log.read_text()


def test_client_eof_then_term_for_a_server_that_ignores_stdin(procs, tmp_path):
    code = "import os, signal, time; signal.signal(signal.SIGTERM, lambda *a: os._exit(7)); time.sleep(60)"
    p = start(procs, tmp_path, harness_cmd([sys.executable, "-c", code]))
    time.sleep(0.3)
    p.close_stdin()
    assert p.wait() == 7


def test_client_eof_then_kill_for_a_server_that_ignores_term(procs, tmp_path):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    p = start(procs, tmp_path, harness_cmd([sys.executable, "-c", code]))
    time.sleep(0.3)
    p.close_stdin()
    assert p.wait() == 128 + signal.SIGKILL


def test_server_stderr_passes_through(procs, tmp_path):
    server = ["sh", "-c", f"echo server-says-hi >&2; exec {' '.join(RAW_SERVER)}"]
    p = start(procs, tmp_path, harness_cmd(server))
    p.initialize()
    assert wait_for(lambda: "server-says-hi" in p.stderr())


def test_unstartable_server(procs, tmp_path):
    p = start(procs, tmp_path, harness_cmd([str(tmp_path / "no-such-server")]))
    assert p.wait() == 127
    assert "cannot start server" in p.stderr()


def test_kill_decision_denies_and_kills_the_server_process_group(procs, tmp_path):
    pidfile = tmp_path / "child.pid"
    server = ["sh", "-c", f"sleep 1000 & echo $! > {pidfile}; exec {' '.join(RAW_SERVER)}"]
    rec = tmp_path / "rec.jsonl"
    p = start(procs, tmp_path, cli_cmd(server, "--record", str(rec), policy=True))
    p.initialize()
    assert wait_for(pidfile.exists)
    child = int(pidfile.read_text())
    reply = p.request(call(5, "self_destruct", {}))
    assert reply["error"]["code"] == POLICY_DENIED and reply["error"]["data"]["decision"] == "kill"
    assert p.wait() == 1  # killed by policy

    def gone() -> bool:
        try:
            return Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    assert wait_for(gone), "the server's child survived: the kill must reach the process group"
    kinds = [e["type"] for e in read_events(rec)]
    assert "kill" in kinds and kinds.index("tool_call") < kinds.index("kill")


def test_alert_is_forwarded_and_recorded(procs, tmp_path):
    server, log = logged_server(tmp_path)
    rec = tmp_path / "rec.jsonl"
    p = start(procs, tmp_path, cli_cmd(server, "--record", str(rec), policy=True))
    p.initialize()
    reply = p.request(call(6, "fetch_url", {"url": "http://127.0.0.1:9/"}))
    assert "result" in reply
    ev = [e for e in read_events(rec) if e["type"] == "tool_call"][0]
    assert ev["decision"] == "alert" and ev["rule"] == "network_alert"


# --- approval on the controlling terminal -------------------------------------------------


@pytest.fixture
def tty():
    t = Tty()
    yield t
    t.close()


def test_approval_allow_once_then_deny_for_session(procs, tmp_path, tty):
    server, log = logged_server(tmp_path)
    rec = tmp_path / "rec.jsonl"
    p = start(
        procs,
        tmp_path,
        cli_cmd(server, "--record", str(rec), approval_timeout=20),
        **tty.popen_kw(),
    )
    p.initialize()
    p.send(call(1, *NEEDS_APPROVAL))
    prompt = tty.wait_prompt()
    assert "sensitive_path" in prompt and ".env.local" in prompt
    tty.press(b"a")
    assert "result" in p.recv()
    p.send(call(2, *NEEDS_APPROVAL))
    tty.wait_prompt()
    tty.press(b"D")
    err = p.recv()["error"]
    assert err["code"] == POLICY_DENIED and err["data"]["approval"] == "rejected"
    assert "for this session" in err["data"]["reason"]
    # Remembered: no third prompt.
    err = p.request(call(3, *NEEDS_APPROVAL))["error"]
    assert "denied for this session" in err["data"]["reason"]
    assert b"auto-deny" not in tty.seen
    approvals = [
        (e["request_id"], e["approval"]) for e in read_events(rec) if e["type"] == "tool_call"
    ]
    assert approvals == [(1, "approved"), (2, "rejected"), (3, "rejected")]
    assert log.read_text().count(".env.local") == 1


def test_approval_times_out_closed(procs, tmp_path, tty):
    server, log = logged_server(tmp_path)
    p = start(procs, tmp_path, harness_cmd(server, approval_timeout=0.5), **tty.popen_kw())
    p.initialize()
    p.send(call(1, *NEEDS_APPROVAL))
    tty.wait_prompt()
    err = p.recv()["error"]
    assert err["code"] == POLICY_DENIED and "timed out" in err["data"]["reason"]
    assert ".env.local" not in log.read_text()


def test_approval_without_a_terminal_fails_closed(procs, tmp_path):
    server, log = logged_server(tmp_path)
    p = start(procs, tmp_path, harness_cmd(server, approval_timeout=5), start_new_session=True)
    p.initialize()
    err = p.request(call(1, *NEEDS_APPROVAL))["error"]
    assert err["code"] == POLICY_DENIED and "no terminal" in err["data"]["reason"]
    assert ".env.local" not in log.read_text()


def test_non_blocking_client_descriptors(tmp_path):
    """Node hands children sockets and may leave them O_NONBLOCK: the proxy must wait, not
    mistake EAGAIN for a closed client (which would shut the server down)."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)  # the flag lives on the shared open file description
    stderr = open(tmp_path / "stderr.txt", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        harness_cmd(RAW_SERVER),
        stdin=theirs.fileno(),
        stdout=theirs.fileno(),
        stderr=stderr,
        env=child_env(),
    )
    theirs.close()
    reader = ours.makefile("rb")
    try:
        ours.sendall(line(call(1, "big_result", {"size": 4 << 20})))
        time.sleep(0.5)  # let the proxy fill the socket buffer and hit EAGAIN
        reply = json.loads(reader.readline())
        assert len(reply["result"]["content"][0]["text"]) == 4 << 20
        ours.sendall(line(call(2, *ALLOWED)))
        assert json.loads(reader.readline())["id"] == 2
        ours.shutdown(socket.SHUT_WR)
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.close()
        ours.close()
        stderr.close()


# --- a server that misbehaves: ignores SIGTERM, closes its stdout, outlives the proxy -------

STUBBORN = [sys.executable, str(Path(__file__).parent / "stubborn_server.py")]


def _gone(pid: int) -> bool:
    """Dead or a zombie (its parent, not us, reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _server_pid(p: Proc, rid: int = 90) -> int:
    return int(p.request(call(rid, "pid", {}))["result"]["content"][0]["text"])


def test_sigterm_ignored_by_the_server_escalates_to_sigkill(procs, tmp_path):
    rec = tmp_path / "rec.jsonl"
    log = tmp_path / "server.log"
    server = [*STUBBORN, "--ignore-term", "--ignore-eof", "--log", str(log)]
    p = start(procs, tmp_path, harness_cmd(server, "--record", str(rec)))
    p.initialize()
    pid = _server_pid(p)
    p.send(call(1, "hang", {}))
    assert wait_for(lambda: '"hang"' in log.read_text())
    p.proc.send_signal(signal.SIGTERM)
    reply = p.recv()
    assert reply["id"] == 1 and reply["error"]["code"] == SERVER_CLOSED
    assert "ignored SIGTERM" in reply["error"]["message"]
    assert p.wait() == 143
    assert _gone(pid)
    events = read_events(rec)
    (exit_ev,) = [e for e in events if e["type"] == "server_exit"]
    assert exit_ev["pending_requests"] == 1
    hang = [e for e in events if e["type"] == "tool_call" and e["tool"] == "hang"][0]
    results = [e for e in events if e["type"] == "tool_result"]
    assert any(r["correlation_id"] == hang["correlation_id"] and r["is_error"] for r in results)
    assert "ignored SIGTERM" in p.stderr()


def test_server_that_closes_its_stdout_but_runs_on_is_stopped(procs, tmp_path):
    rec = tmp_path / "rec.jsonl"
    server = [*STUBBORN, "--ignore-eof"]
    p = start(procs, tmp_path, harness_cmd(server, "--record", str(rec)))
    p.initialize()
    pid = _server_pid(p)
    p.send(call(1, "hang", {}))
    p.send(call(2, "close_stdout", {}))
    replies = {r["id"]: r["error"] for r in (p.recv(), p.recv())}
    assert set(replies) == {1, 2}
    for e in replies.values():
        assert e["code"] == SERVER_CLOSED and "closed its output" in e["message"]
    p.wait()
    assert _gone(pid)
    events = read_events(rec)
    calls = {e["correlation_id"] for e in events if e["type"] == "tool_call"}
    results = {e["correlation_id"] for e in events if e["type"] == "tool_result"}
    assert calls <= results  # no tool_call without its outcome
    assert any(e["type"] == "server_exit" for e in events)


def test_server_dies_with_a_killed_proxy(procs, tmp_path):
    server = [*STUBBORN, "--ignore-term", "--ignore-eof"]
    p = start(procs, tmp_path, harness_cmd(server))
    p.initialize()
    pid = _server_pid(p)
    p.proc.kill()  # SIGKILL: the proxy gets no chance to stop anything
    p.proc.wait()
    assert wait_for(lambda: _gone(pid)), "the server outlived the proxy"


def test_death_signal_survives_an_exec_in_place_launcher(tmp_path):
    """The --sandbox launcher applies its ruleset and execs the server in place: the
    server must still die with the proxy."""
    parent = (
        "import sys\n"
        "from mcp_defense.proxy.spawn import spawn_server\n"
        "launcher = [sys.executable, '-c', 'import os, sys; os.execvp(sys.argv[1], sys.argv[1:])']\n"
        f"p = spawn_server([*launcher, *{STUBBORN!r}, '--ignore-term', '--ignore-eof'])\n"
        "print(p.pid, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, env=child_env(), text=True
    )
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        assert wait_for(lambda: "stubborn_server" in Path(f"/proc/{pid}/cmdline").read_text())
    finally:
        proc.kill()
        proc.wait()
    assert wait_for(lambda: _gone(pid)), "the exec'd server outlived its parent"
