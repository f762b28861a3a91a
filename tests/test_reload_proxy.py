"""Hot reload under load through the real stdio proxy and a real MCP SDK server.

A pipelined JSON-RPC client keeps a window of `echo` calls in flight while the policy is
rewritten 24 times (some saves in place, some renamed over, some broken). Then: every call got
exactly one answer, no call failed for any reason but policy, every recorded decision matches
the version it names (version k denies `echo m<k>` and nothing else), and no broken version was
ever in force.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from support.reload_policy import (
    ARCHETYPE,
    BROKEN,
    markers,
    save_atomic,
    save_in_place,
    version_of,
    wait_until,
    write_policy,
)

from mcp_defense.protocol.jsonrpc import POLICY_DENIED

ROOT = Path(__file__).resolve().parents[1]
SDK_SERVER = [sys.executable, str(ROOT / "examples" / "servers" / "workspace_server.py")]
RAW_SERVER = [sys.executable, str(ROOT / "examples" / "servers" / "raw_server.py")]
VARS = {"workspace": "/ws"}
N_MARKERS = 26
WINDOW = 32  # calls in flight
MIN_CALLS = 3000  # spread over the rewrites, so every version is under load
REWRITES = 24


def cli_argv(main: Path, rec: Path, server: list[str], *flags: str) -> list[str]:
    """The real `mcp-defense stdio` over the test policy (reload on unless flags say not)."""
    return [
        sys.executable, "-m", "mcp_defense.cli.main", "stdio", "--policy", str(main),
        "--set", "workspace=/ws", "--archetype", ARCHETYPE, "--record", str(rec), *flags,
        "--", *server,
    ]  # fmt: skip


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(x) for x in lines[:-1] if x.strip()] + (
        [json.loads(lines[-1])] if lines and lines[-1].endswith("}") else []
    )


class LoadClient:
    """Raw JSON-RPC over the proxy's stdio: one thread sends, one reads, WINDOW in flight."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.sent: dict[int, str] = {}  # id -> marker text
        self.answers: dict[int, list[dict[str, Any]]] = {}
        self.slots = threading.Semaphore(WINDOW)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.buf = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.errors: list[str] = []

    def request(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Synchronous request before the load starts (initialize)."""
        self._send(obj)
        while True:
            msg = self._next(30.0)
            if msg.get("id") == obj["id"]:
                return msg

    def start(self) -> None:
        self.reader.start()
        self.writer.start()

    def _send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    def _next(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            if not select.select([fd], [], [], timeout)[0]:
                raise TimeoutError("no answer from the proxy")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("proxy closed stdout")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def _write(self) -> None:
        rid = 1000
        while not self.stop.is_set():
            if not self.slots.acquire(timeout=0.1):
                continue
            text = f"m{rid % N_MARKERS}"
            with self.lock:
                self.sent[rid] = text
            call = {"name": "echo", "arguments": {"text": text}}
            try:
                self._send({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": call})
            except OSError as e:
                self.errors.append(f"send failed: {e}")
                return
            rid += 1

    def _read(self) -> None:
        while True:
            try:
                msg = self._next(60.0)
            except (TimeoutError, EOFError) as e:
                if not self.stop.is_set() or self.outstanding():
                    self.errors.append(str(e))
                return
            rid = msg.get("id")
            if isinstance(rid, int):
                with self.lock:
                    self.answers.setdefault(rid, []).append(msg)
                self.slots.release()

    def outstanding(self) -> int:
        with self.lock:
            return len(self.sent) - len(self.answers)

    def done(self) -> int:
        with self.lock:
            return len(self.answers)


def test_reload_under_load_through_real_proxy(tmp_path: Path) -> None:
    main, mk = write_policy(tmp_path / "pol", 0)
    rec = tmp_path / "rec.jsonl"
    good: dict[str, int | None] = {version_of(main, VARS): 0}
    argv = cli_argv(main, rec, SDK_SERVER + [str(tmp_path)])
    stderr = open(tmp_path / "stderr.txt", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        bufsize=0,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    client = LoadClient(proc)
    try:
        init = client.request(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "load", "version": "1"},
                },
            }
        )
        assert "result" in init, init
        client._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        client.start()

        def decided_under(version: str) -> bool:
            return any(
                e["type"] == "tool_call" and e["policy_version"] == version for e in events(rec)
            )

        wait_until(lambda: client.done() > 200, what="first answers")
        failures = 0
        for k in range(1, REWRITES + 1):
            if k % 5 == 0:  # broken: must be refused, the last good version stays
                save_atomic(mk, BROKEN[(k // 5) % len(BROKEN)])
                failures += 1
                wait_until(
                    lambda n=failures: (
                        sum(e["type"] == "policy_reload_failed" for e in events(rec)) >= n
                    ),
                    what=f"reload failure {failures}",
                )
                continue
            save = save_in_place if k % 2 else save_atomic
            save(mk, markers(k))
            if k % 3 == 0:  # a quick double save: the empty file may be seen in between
                good[version_of(main, VARS)] = k
                save_in_place(mk, "")
                good[version_of(main, VARS)] = None
                save(mk, markers(k))
            version = version_of(main, VARS)
            good[version] = k
            wait_until(lambda v=version: decided_under(v), what=f"calls decided under v{k}")
            wait_until(
                lambda k=k: client.done() >= MIN_CALLS * k // REWRITES,
                timeout=120,
                what=f"{MIN_CALLS * k // REWRITES} answers",
            )
    finally:
        client.stop.set()
        client.writer.join(10)  # no call may be sent after we start counting what is outstanding
        wait_until(lambda: client.outstanding() == 0, timeout=60, what="outstanding answers")
        assert proc.stdin is not None
        proc.stdin.close()
        code = proc.wait(60)
        stderr.close()
    err = (tmp_path / "stderr.txt").read_text(errors="replace")
    assert client.errors == [], err[-3000:]
    assert code == 0, err[-3000:]

    # The client's view: one answer per call; only policy ever refused a call.
    assert len(client.sent) >= MIN_CALLS
    assert set(client.answers) == set(client.sent)
    assert all(len(a) == 1 for a in client.answers.values())
    denied: dict[int, dict[str, Any]] = {}
    for rid, [msg] in client.answers.items():
        if "error" in msg:
            assert msg["error"]["code"] == POLICY_DENIED, msg
            denied[rid] = msg["error"]["data"]
        else:
            assert msg["result"]["isError"] is False, msg
            assert msg["result"]["content"][0]["text"] == client.sent[rid]

    # The recording's view: every decision matches the version it names.
    evs = events(rec)
    calls = [e for e in evs if e["type"] == "tool_call"]
    assert Counter(e["request_id"] for e in calls) == Counter(list(client.sent))
    per_version: Counter[int | None] = Counter()
    for e in calls:
        assert e["policy_version"] in good, f"decided under a version that never compiled: {e}"
        k = good[e["policy_version"]]
        per_version[k] += 1
        text = e["arguments"]["text"]
        if text == f"m{k}":
            assert (e["decision"], e["rule"]) == ("deny", f"marker_{k}"), e
            assert denied[e["request_id"]]["policy_version"] == e["policy_version"]
        else:
            assert (e["decision"], e["rule"]) == ("allow", ""), e
            assert e["request_id"] not in denied
    assert len(set(per_version) - {None}) >= 20, per_version
    results = [e for e in evs if e["type"] == "tool_result"]
    assert len(results) == len(client.sent) - len(denied)
    assert not any(e["is_error"] for e in results)

    # Reload events: every broken save refused with file:line:col, the good one kept.
    failed = [e for e in evs if e["type"] == "policy_reload_failed"]
    assert len(failed) >= 4
    for e in failed:
        assert e["version_in_force"] in good
        assert all(d.split(":")[1].isdigit() for d in e["diagnostics"]), e
    reloaded = [e for e in evs if e["type"] == "policy_reloaded"]
    assert {e["new_version"] for e in reloaded} <= set(good)
    assert "policy reload failed, keeping version" in err
    print(
        f"\n{len(client.sent)} calls ({len(denied)} denied by a marker), decided under "
        f"{len(per_version)} versions; {len(reloaded)} reloads, {len(failed)} refused"
    )


def test_cli_no_reload_then_sighup(tmp_path: Path) -> None:
    """`--no-reload`: a save changes nothing until SIGHUP, which reloads and is not passed to
    the server (it keeps answering)."""
    main, mk = write_policy(tmp_path / "pol", 0)
    rec = tmp_path / "rec.jsonl"
    old = version_of(main, VARS)
    proc = subprocess.Popen(
        cli_argv(main, rec, RAW_SERVER, "--no-reload"), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    client = LoadClient(proc)

    def echo(rid: int, text: str) -> dict[str, Any]:
        return client.request({
            "jsonrpc": "2.0", "id": rid, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}},
        })  # fmt: skip

    try:
        assert "result" in echo(1, "m1")
        save_atomic(mk, markers(1))
        new = version_of(main, VARS)
        assert "result" in echo(2, "m1")  # not watching: nothing changed (yet)
        wait_until(lambda: any(e["type"] == "session_start" for e in events(rec)))
        proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: any(e["type"] == "policy_reloaded" for e in events(rec)), what="SIGHUP reload"
        )
        denied = echo(3, "m1")
        assert denied["error"]["code"] == POLICY_DENIED
        assert denied["error"]["data"]["policy_version"] == new
        assert "result" in echo(4, "m2")  # the server is alive: SIGHUP was not forwarded
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        code = proc.wait(30)
        err = proc.stderr.read().decode() if proc.stderr else ""
    assert code == 0, err
    [ev] = [e for e in events(rec) if e["type"] == "policy_reloaded"]
    assert (ev["old_version"], ev["new_version"]) == (old, new)
    assert ev["added"] == ["marker_1"] and ev["removed"] == ["marker_0"]
    assert f"policy reloaded {old} → {new}" in err
