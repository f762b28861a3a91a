"""A real MCP server (Python `mcp` SDK, stdio) whose tools make network flows on request, for
the proxy-level flow correlation tests.

Run: python tests/flow_server.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("flow-test")
_held: list[socket.socket] = []

_CHILD = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
print("connected", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _mark(marker: str) -> None:
    if marker:
        Path(marker).write_text(str(os.getpid()))


@server.tool()
def connect(port: int, hold_s: float = 0.0, via_child: bool = False, marker: str = "") -> str:
    """Open a loopback TCP connection to `port` (from this process, or from a child), keep
    it open `hold_s` seconds, then answer."""
    _mark(marker)
    if via_child:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(port), str(hold_s + 30)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        child.stdout.readline()
    else:
        _held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    time.sleep(hold_s)
    return "connected"


@server.tool()
def hold(seconds: float, marker: str = "") -> str:
    """Do nothing for `seconds` (a call that stays open while the test acts)."""
    _mark(marker)
    time.sleep(seconds)
    return "held"


@server.tool()
def pid() -> int:
    """This server's pid."""
    return os.getpid()


if __name__ == "__main__":
    server.run("stdio")
