"""Round-trip overhead of the stdio proxy, and its memory on a 16 MiB message.

Same client, same server, same run: median time of sequential allowed `tools/call`s sent
straight to the server, then through `mcp-defense stdio`. The client is a raw line client
(os.write / os.read), so the client's own cost is the same on both sides and small.

    python benchmarks/bench_proxy.py [--calls 2000] [--server raw|sdk|both] [--table builtin|tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVERS = {
    "raw": [sys.executable, str(ROOT / "examples/servers/raw_server.py")],
    "sdk": [sys.executable, str(ROOT / "examples/servers/workspace_server.py")],
}
INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"},
    },
}


class LineClient:
    def __init__(self, argv: list[str], cwd: str) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd, bufsize=0
        )
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self.buf = b""

    def send(self, obj: object) -> None:
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view) :]

    def send_raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view) :]

    def recv_line(self) -> bytes:
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line, self.buf = self.buf[: nl + 1], self.buf[nl + 1 :]
                return line
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                raise EOFError("server closed stdout")
            self.buf += chunk

    def recv_large_line(self) -> bytes:
        parts = [self.buf]
        self.buf = b""
        while True:
            nl = parts[-1].find(b"\n")
            if nl >= 0:
                last = parts[-1]
                parts[-1] = last[: nl + 1]
                self.buf = last[nl + 1 :]
                return b"".join(parts)
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                raise EOFError("server closed stdout")
            parts.append(chunk)

    def initialize(self) -> None:
        self.send(INIT)
        self.recv_line()
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def close(self) -> int:
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def round_trips(client: LineClient, calls: int, warmup: int, path: str) -> list[float]:
    times: list[float] = []
    msg = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": path}},
    }
    for i in range(warmup + calls):
        msg["id"] = i + 1
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        t0 = time.perf_counter_ns()
        client.send_raw(data)
        line = client.recv_line()
        t1 = time.perf_counter_ns()
        if b'"error"' in line[:64] or b'"isError":true' in line:
            raise RuntimeError(f"call was not allowed/successful: {line[:300]!r}")
        if i >= warmup:
            times.append((t1 - t0) / 1000)
    return times


def proxy_argv(table: str, server: list[str], workspace: str, record: str | None) -> list[str]:
    if table == "tiny":
        argv = [sys.executable, str(ROOT / "tests/support/tiny_table_proxy.py")]
        if record:
            argv += ["--record", record]
        return argv + ["--"] + server
    argv = [
        sys.executable,
        "-m",
        "mcp_defense.cli.main",
        "stdio",
        "--archetype",
        "filesystem",
        "--agent-id",
        "bench",
        "--set",
        f"workspace={workspace}",
    ]
    if record:
        argv += ["--record", record]
    return argv + ["--"] + server


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_server(
    name: str, calls: int, warmup: int, table: str, workspace: str, record: str | None
) -> dict:
    server = SERVERS[name] + ([workspace] if name == "sdk" else [])
    target = os.path.join(workspace, "main.py")
    direct = LineClient(server, workspace)
    direct.initialize()
    proxied = LineClient(proxy_argv(table, server, workspace, record), workspace)
    proxied.initialize()
    # Interleave rounds so drift (CPU frequency, other load) hits both sides alike.
    d_times: list[float] = []
    p_times: list[float] = []
    rounds = 5
    for _ in range(rounds):
        d_times += round_trips(direct, calls // rounds, warmup, target)
        p_times += round_trips(proxied, calls // rounds, warmup, target)
    direct.close()
    proxied.close()
    d, p = statistics.median(d_times), statistics.median(p_times)
    return {
        "server": name,
        "calls": len(d_times),
        "direct_us": round(d, 1),
        "proxied_us": round(p, 1),
        "ratio": round(p / d, 2),
        "overhead_us": round(p - d, 1),
        "direct_p10_us": round(statistics.quantiles(d_times, n=10)[0], 1),
        "proxied_p10_us": round(statistics.quantiles(p_times, n=10)[0], 1),
        "direct_p90_us": round(statistics.quantiles(d_times, n=10)[-1], 1),
        "proxied_p90_us": round(statistics.quantiles(p_times, n=10)[-1], 1),
    }


def bench_memory(table: str, workspace: str, size: int) -> dict:
    """Peak RSS (VmHWM) of the proxy process: the result first, then the argument, because
    the high-water mark only grows."""
    server = SERVERS["raw"]
    client = LineClient(proxy_argv(table, server, workspace, None), workspace)
    client.initialize()
    round_trips(client, 20, 0, os.path.join(workspace, "main.py"))
    pid = client.proc.pid
    before = peak_rss_kib(pid)
    t0 = time.perf_counter()
    client.send(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "big_result", "arguments": {"size": size}},
        }
    )
    reply = client.recv_large_line()
    t_res = time.perf_counter() - t0
    peak_res = peak_rss_kib(pid)
    result_bytes = len(reply)
    text = "x" * size
    t0 = time.perf_counter()
    client.send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "sha256", "arguments": {"text": text}},
        }
    )
    reply = client.recv_line()
    t_arg = time.perf_counter() - t0
    assert b'"result"' in reply, reply[:200]
    peak_arg = peak_rss_kib(pid)
    client.close()
    mib = size / (1 << 20)
    return {
        "message_mib": mib,
        "proxy_peak_rss_before_mib": round(before / 1024, 1),
        "peak_after_16mib_result_mib": round(peak_res / 1024, 1),
        "peak_after_16mib_argument_mib": round(peak_arg / 1024, 1),
        "result_growth_x_message": round((peak_res - before) / 1024 / mib, 2),
        "argument_growth_x_message": round((peak_arg - before) / 1024 / mib, 2),
        "result_round_trip_s": round(t_res, 3),
        "argument_round_trip_s": round(t_arg, 3),
        "result_bytes": result_bytes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--server", choices=["raw", "sdk", "both"], default="both")
    ap.add_argument("--table", choices=["builtin", "tiny"], default="builtin")
    ap.add_argument("--record", action="store_true", help="also record events to a temp file")
    ap.add_argument("--memory-mib", type=int, default=16)
    ap.add_argument("--no-memory", action="store_true")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as ws:
        Path(ws, "main.py").write_text("print('hello')\n")
        record = os.path.join(ws, "rec.jsonl") if ns.record else None
        names = ["raw", "sdk"] if ns.server == "both" else [ns.server]
        results = [bench_server(n, ns.calls, ns.warmup, ns.table, ws, record) for n in names]
        for r in results:
            print(json.dumps(r))
        if not ns.no_memory:
            print(json.dumps(bench_memory(ns.table, ws, ns.memory_mib << 20)))


if __name__ == "__main__":
    main()
