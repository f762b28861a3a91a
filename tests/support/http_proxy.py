"""Real processes for the HTTP proxy tests: an `mcp` SDK server over HTTP, and
`mcp-defense http|sse` in front of it, each on a free port of 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER = HERE / "http_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"process exited with {proc.returncode}: {out[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stderr.read().decode() if proc.stderr else ""


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    url: str


@contextlib.contextmanager
def upstream(transport: str = "streamable-http", *flags: str) -> Iterator[Running]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), str(port), transport, *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, proc)
        path = "/sse" if transport == "sse" else "/mcp"
        yield Running(proc, port, f"http://127.0.0.1:{port}{path}")
    finally:
        stop(proc)


@contextlib.contextmanager
def proxy(
    command: str, upstream_url: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[Running]:
    """`mcp-defense http|sse` as a user runs it, on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcp_defense",
            command,
            "--upstream",
            upstream_url,
            "--bind",
            f"127.0.0.1:{port}",
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    running = Running(proc, port, "")
    try:
        wait_port(port, proc)
        path = upstream_url.split("://", 1)[1].partition("/")[2]
        running.url = f"http://127.0.0.1:{port}/{path}"
        yield running
    finally:
        stop(proc)


def rss_hwm_kib(pid: int) -> int:
    """Peak resident memory of a process (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0
