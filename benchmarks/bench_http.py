"""Added latency of `mcp-defense http` per call, against the same SDK server reached directly.

Same client, same server, same run: median time of sequential allowed `tools/call`s over
Streamable HTTP (handshake era, one session), straight to the `mcp` SDK server and then
through the proxy, for the SDK's SSE responses and its JSON responses. Target: ≤ 1.5× direct.
Also the proxy's peak memory on a 16 MiB result.

    python benchmarks/bench_http.py [--calls 300]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.http_proxy import (  # noqa: E402
    free_port,
    proxy,
    rss_hwm_kib,
    stop,
    upstream,
    wait_port,
)

HEAD = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
TARGET = 1.5


def session(http: httpx2.Client, url: str) -> dict[str, str]:
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
    r = http.post(url, json=init, headers=HEAD)
    r.raise_for_status()
    h = {**HEAD, "mcp-protocol-version": "2025-11-25"}
    if "mcp-session-id" in r.headers:
        h["mcp-session-id"] = r.headers["mcp-session-id"]
    http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h)
    return h


def median_call_ms(url: str, calls: int) -> float:
    with httpx2.Client(timeout=30) as http:
        h = session(http, url)
        times = []
        for i in range(calls):
            body = {
                "jsonrpc": "2.0",
                "id": i + 1,
                "method": "tools/call",
                "params": {"name": "read_file", "arguments": {"path": f"src/file{i}.py"}},
            }
            t0 = time.perf_counter()
            r = http.post(url, json=body, headers=h)
            assert r.status_code == 200 and b"contents of" in r.content, r.text
            times.append(time.perf_counter() - t0)
        return statistics.median(times[calls // 10 :]) * 1e3


@contextlib.contextmanager
def bare_proxy(upstream_url: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "bare_http_proxy.py"), upstream_url, str(port)],
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    print(
        f"{'responses':<10} {'direct ms':>10} {'bare hop ms':>12} {'mcp-defense ms':>15} "
        f"{'added ms':>9} {'ratio':>6} {'bare ratio':>11}"
    )
    for flags, label in (((), "sse"), (("--json",), "json")):
        with (
            upstream("streamable-http", *flags) as up,
            proxy("http", up.url, "-a", "filesystem") as px,
            bare_proxy(up.url) as bare,
        ):
            for url in (up.url, bare, px.url):
                median_call_ms(url, 20)  # warm
            direct = median_call_ms(up.url, args.calls)
            hop = median_call_ms(bare, args.calls)
            via = median_call_ms(px.url, args.calls)
            ratio = via / direct
            mark = "" if ratio <= TARGET else f"  MISSED target ≤ {TARGET}×"
            print(
                f"{label:<10} {direct:>10.2f} {hop:>12.2f} {via:>15.2f} {via - direct:>9.2f} "
                f"{ratio:>5.2f}× {hop / direct:>10.2f}×{mark}"
            )
    print(
        "bare hop: the same SDK server behind a policy-free starlette/uvicorn/httpx2 forwarder "
        "(benchmarks/bare_http_proxy.py), the floor of one HTTP hop on this stack"
    )
    with (
        upstream("streamable-http", "--json") as up,
        proxy("http", up.url, "-a", "filesystem") as px,
    ):
        before = rss_hwm_kib(px.proc.pid)
        with httpx2.Client(timeout=60) as http:
            h = session(http, px.url)
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "big", "arguments": {"mib": 16}},
            }
            with http.stream("POST", px.url, json=body, headers=h) as r:
                size = sum(len(c) for c in r.iter_raw())
        grown = (rss_hwm_kib(px.proc.pid) - before) / 1024
        print(
            f"16 MiB result: {size / (1 << 20):.1f} MiB through; proxy peak RSS grew {grown:.1f} MiB"
        )


if __name__ == "__main__":
    main()
