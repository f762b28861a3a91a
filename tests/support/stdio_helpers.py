"""Drive a real `mcp-defense stdio` process over raw pipes (no SDK in between), so framing
tests control every byte the proxy sees and can read exactly what the server received."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
RAW_SERVER = [sys.executable, str(ROOT / "examples/servers/raw_server.py")]
SDK_SERVER = [sys.executable, str(ROOT / "examples/servers/workspace_server.py")]
TIMEOUT = 20.0

INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


def child_env() -> dict[str, str]:
    """The environment for a proxy process: this checkout importable, installed or not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def real_policy_available() -> bool:
    try:
        from mcp_defense.policy.loader import load_table  # noqa: F401
    except ImportError:
        return False
    return True


def proxy_argv(server: list[str], *flags: str, workspace: str | Path = "/workspace") -> list[str]:
    """The proxy command line: the real CLI over the built-in policy pack."""
    return [
        sys.executable,
        "-m",
        "mcp_defense.cli.main",
        "stdio",
        "--archetype",
        "filesystem",
        "--agent-id",
        "test-agent",
        "--set",
        f"workspace={workspace}",
        *flags,
        "--",
        *server,
    ]


def tiny_proxy_argv(server: list[str], *flags: str) -> list[str]:
    """The proxy over tests/support/tiny_table_proxy.py's hand-written table (no policy compiler)."""
    return [sys.executable, str(TESTS / "support" / "tiny_table_proxy.py"), *flags, "--", *server]


def call(rid: Any, tool: str, arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": rid,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


def line(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


class Proc:
    """A subprocess with raw stdin/stdout pipes and stderr captured in a file."""

    def __init__(self, argv: list[str], tmp: Path, **kw: Any) -> None:
        self.stderr_path = tmp / f"stderr-{time.monotonic_ns()}.txt"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in wait()
        kw.setdefault("env", child_env())
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,
            **kw,
        )
        self.buf = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, data: bytes | Any) -> None:
        raw = data if isinstance(data, bytes) else line(data)
        assert self.proc.stdin is not None
        self.proc.stdin.write(raw)

    def recv_raw(self, timeout: float = TIMEOUT) -> bytes:
        """One line from stdout, including its newline."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no line within {timeout}s; stderr: {self.stderr()[-2000:]}")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError(f"stdout closed; stderr: {self.stderr()[-2000:]}")
            self.buf += chunk
        nl = self.buf.index(b"\n")
        out, self.buf = self.buf[: nl + 1], self.buf[nl + 1 :]
        return out

    def recv(self, timeout: float = TIMEOUT) -> Any:
        return json.loads(self.recv_raw(timeout))

    def request(self, obj: Any, timeout: float = TIMEOUT) -> Any:
        self.send(obj)
        return self.recv(timeout)

    def nothing_pending(self, wait: float = 0.3) -> bool:
        """True if no output arrives within `wait` seconds (used only to prove an absence)."""
        assert self.proc.stdout is not None
        if self.buf:
            return False
        return not select.select([self.proc.stdout.fileno()], [], [], wait)[0]

    def initialize(self) -> Any:
        reply = self.request(INIT)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._stderr.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


class Tty:
    """The proxy runs with a pty as its controlling terminal; the test is the human."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.seen = b""

    def popen_kw(self) -> dict:
        slave = self.slave

        def become_session_leader_with_ctty() -> None:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        return {"preexec_fn": become_session_leader_with_ctty, "pass_fds": (slave,)}

    def wait_prompt(self, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while b"auto-deny" not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise TimeoutError(f"no prompt; tty so far: {self.seen!r}")
            self.seen += os.read(self.master, 4096)
        text, self.seen = self.seen.decode(errors="replace"), b""
        return text

    def press(self, key: bytes) -> None:
        os.write(self.master, key)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)
