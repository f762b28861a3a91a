"""Does a SIEM sink slow the proxy down? Round trip with no sink vs a sink that hangs (and
one that answers), in one run.

The hanging sink is a socket on 127.0.0.1 that accepts connections and never answers, so
every delivery attempt waits for its timeout; the proxy must not notice (delivery runs in a
background thread, events go to the spool). Same client, same server, rounds interleaved.

    python benchmarks/bench_sinks.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import SERVERS, LineClient, proxy_argv, round_trips  # noqa: E402


def hanging_listener() -> tuple[socket.socket, str]:
    """Accepts (the kernel does, via the backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    return s, f"http://127.0.0.1:{s.getsockname()[1]}/hook"


def answering_receiver() -> tuple[ThreadingHTTPServer, str]:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/hook"


def summary(name: str, times: list[float], base: float) -> dict:
    med = statistics.median(times)
    q = statistics.quantiles(times, n=10)
    return {
        "config": name,
        "calls": len(times),
        "median_us": round(med, 1),
        "p10_us": round(q[0], 1),
        "p90_us": round(q[-1], 1),
        "vs_no_sink": round(med / base, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=50)
    ns = ap.parse_args()
    hang_sock, hang_url = hanging_listener()
    ok_srv, ok_url = answering_receiver()
    with tempfile.TemporaryDirectory() as ws:
        Path(ws, "main.py").write_text("print('hello')\n")
        env_spool = ["--spool-dir", os.path.join(ws, "spool"), "--sink-timeout", "2"]
        server = SERVERS["raw"]
        base_argv = proxy_argv("builtin", server, ws, None)
        cut = base_argv.index("--")
        rec = ["--record", os.path.join(ws, "rec.jsonl")]

        def with_flags(*flags: str) -> list[str]:
            return base_argv[:cut] + list(flags) + base_argv[cut:]

        # "recording only" builds the same events as any sink does: the difference between it
        # and the sink rows is the cost of delivery itself.
        configs = {
            "no sink": base_argv,
            "hanging webhook": with_flags("--siem-webhook", hang_url, *env_spool),
            "recording only": with_flags(*rec),
            "recording + hanging webhook": with_flags(*rec, "--siem-webhook", hang_url, *env_spool),
            "recording + answering webhook": with_flags(*rec, "--siem-webhook", ok_url, *env_spool),
        }
        clients = {}
        for name, argv in configs.items():
            c = LineClient(argv, ws)
            c.initialize()
            clients[name] = c
        times: dict[str, list[float]] = {n: [] for n in configs}
        target = os.path.join(ws, "main.py")
        rounds = 5
        for _ in range(rounds):  # interleaved, so drift hits every configuration alike
            for name, c in clients.items():
                times[name] += round_trips(c, ns.calls // rounds, ns.warmup, target)
        for c in clients.values():
            c.close()
        base = statistics.median(times["no sink"])
        for name in configs:
            print(json.dumps(summary(name, times[name], base)))
    hang_sock.close()
    ok_srv.shutdown()


if __name__ == "__main__":
    main()
