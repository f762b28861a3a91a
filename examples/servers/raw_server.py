"""A minimal MCP-speaking JSON-RPC line server with no SDK: the benchmark's lower bound, and
the tests' witness of exactly which bytes reached a server.

It answers initialize, tools/list and tools/call as fast as Python can (a call's result is
its arguments, echoed), so a benchmark through the proxy measures the proxy. A few tool
names drive lifecycle tests: `stop_server {"status"}` exits with that status without answering, `hang` never
answers, `big_result {"size"}` returns a text of that many bytes, `sha256 {"text"}` hashes
its argument. With `--log FILE` every line received is appended to FILE verbatim, and a
SIGTERM/SIGINT is logged then exits with code 42 + signal number.

Run: python examples/servers/raw_server.py [--log FILE]
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from typing import Any

_TOOLS = {
    "tools": [
        {
            "name": name,
            "description": desc,
            "inputSchema": {"type": "object"},
            "annotations": {"readOnlyHint": ro},
        }
        for name, desc, ro in (
            ("read_file", "Echo the arguments (pretends to read a file).", True),
            ("write_file", "Echo the arguments (pretends to write a file).", False),
            ("big_result", "Return `size` bytes of text.", True),
            ("sha256", "Hash the `text` argument.", True),
            ("stop_server", "Exit with `status` without answering.", False),
            ("hang", "Never answer.", True),
        )
    ]
}


def _text(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": False}


def _call(params: dict[str, Any]) -> dict[str, Any] | None:
    name = params.get("name")
    args = params.get("arguments") or {}
    if name == "big_result":
        size = int(args.get("size", 0))
        return _text(("0123456789abcdef" * (size // 16 + 1))[:size])
    if name == "sha256":
        return _text(
            hashlib.sha256(args.get("text", "").encode("utf-8", "surrogatepass")).hexdigest()
        )
    if name == "stop_server":
        os._exit(int(args.get("status", 0)))
    if name == "hang":
        return None
    return _text(json.dumps(args))


def _result(msg: dict[str, Any]) -> dict[str, Any] | None:
    method = msg.get("method")
    if method == "initialize":
        return {
            "protocolVersion": msg.get("params", {}).get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "raw", "version": "1"},
        }
    if method == "tools/list":
        return _TOOLS
    if method == "tools/call":
        return _call(msg.get("params") or {})
    if method == "ping":
        return {}
    return {"error": True}


def _reply(msg: Any) -> dict[str, Any] | None:
    if not isinstance(msg, dict) or "id" not in msg or "method" not in msg:
        return None
    result = _result(msg)
    if result is None:
        return None
    if result.get("error") is True:
        return {
            "jsonrpc": "2.0",
            "id": msg["id"],
            "error": {"code": -32601, "message": "no such method"},
        }
    return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


def main() -> None:
    log_fd = -1
    if sys.argv[1:2] == ["--log"]:
        log_fd = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

        def on_signal(signum: int, _frame: Any) -> None:
            os.write(log_fd, f"SIGNAL {signum}\n".encode())
            os._exit(42 + signum)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    out = 1
    for line in sys.stdin.buffer:
        if log_fd >= 0:
            os.write(log_fd, line if line.endswith(b"\n") else line + b"\n")
        if not line.strip():
            continue
        msg = json.loads(line)
        if isinstance(msg, list):  # a JSON-RPC batch (pre-2025-06-18 MCP): answer as an array
            reply: Any = [r for r in map(_reply, msg) if r is not None] or None
        else:
            reply = _reply(msg)
        if reply is None:
            continue
        data = (json.dumps(reply, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(out, view) :]


if __name__ == "__main__":
    main()
