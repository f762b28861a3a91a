"""Does a SIEM sink slow the proxy down? Round trip with no sink vs a sink that hangs (and
one that answers), in one run.

The hanging sink is a socket on 127.0.0.1 that accepts connections and never answers, so
every delivery attempt waits for its timeout; the proxy must not notice (delivery runs in a
background thread, events go to the spool). Same client, same server, rounds interleaved.

Two proxies without a sink ("no sink" and "no sink, again") run the same configuration:
the difference between them is the run-to-run noise of this machine, the yardstick for the
sink rows. The "recording" rows add `--record` (written on the proxy's thread before it
moves on, by design) for comparison.

    python benchmarks/bench_sinks.py [--calls 4000] [--rounds 100] [--repeat 1] [--against DIR]

`--against DIR` adds the sink rows (and a no-sink row) run by the `mcp_defense` package in
DIR, interleaved with the others: a before/after comparison on the same machine in one run
(`git archive OLD mcp_defense | tar -x -C DIR`).
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
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import SERVERS, LineClient, proxy_argv, round_trips  # noqa: E402

NO_SINK = "no sink"
NO_SINK_AGAIN = "no sink, again"


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


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of process `pid` so far (ns, from the scheduler): the proxy's
    own work, background threads included, the server and the client excluded."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return total


def summary(name: str, times: list[float], base: list[float], run: int) -> dict:
    med = statistics.median(times)
    q = statistics.quantiles(times, n=100)
    base_med = statistics.median(base)
    base_p95 = statistics.quantiles(base, n=100)[94]
    return {
        "run": run,
        "config": name,
        "calls": len(times),
        "median_us": round(med, 1),
        "p95_us": round(q[94], 1),
        "p99_us": round(q[98], 1),
        "mean_us": round(statistics.fmean(times), 1),
        "median_vs_no_sink_us": round(med - base_med, 1),
        "p95_vs_no_sink_us": round(q[94] - base_p95, 1),
    }


def with_cpu(row: dict, cpu_us: float, base_cpu_us: float) -> dict:
    row["proxy_cpu_us_per_call"] = round(cpu_us, 1)
    row["cpu_vs_no_sink_us"] = round(cpu_us - base_cpu_us, 1)
    return row


def start_proxy(argv: list[str], cwd: str, pythonpath: str | None) -> LineClient:
    """A proxy, with `pythonpath` first on its import path when given (another version)."""
    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        c = LineClient(argv, cwd)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    c.initialize()
    return c


def one_run(ns: argparse.Namespace, run: int, hang_url: str, ok_url: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as ws:
        Path(ws, "main.py").write_text("print('hello')\n")
        server = SERVERS["raw"]
        base_argv = proxy_argv("builtin", server, ws, None)
        cut = base_argv.index("--")
        rec = ["--record", os.path.join(ws, "rec.jsonl")]

        def with_flags(*flags: str) -> list[str]:
            return base_argv[:cut] + list(flags) + base_argv[cut:]

        def spool(name: str) -> list[str]:
            return ["--spool-dir", os.path.join(ws, "spool", name), "--sink-timeout", "2"]

        configs: dict[str, tuple[list[str], str | None]] = {
            NO_SINK: (base_argv, None),
            "hanging webhook": (with_flags("--siem-webhook", hang_url, *spool("h")), None),
            "answering webhook": (with_flags("--siem-webhook", ok_url, *spool("a")), None),
            NO_SINK_AGAIN: (base_argv, None),
            "recording only": (with_flags(*rec), None),
            "recording + hanging webhook": (
                with_flags(*rec, "--siem-webhook", hang_url, *spool("rh")),
                None,
            ),
        }
        if ns.against:
            tag = f" ({ns.against})"
            configs["no sink" + tag] = (base_argv, ns.against)
            configs["hanging webhook" + tag] = (
                with_flags("--siem-webhook", hang_url, *spool("hb")),
                ns.against,
            )
            configs["answering webhook" + tag] = (
                with_flags("--siem-webhook", ok_url, *spool("ab")),
                ns.against,
            )
        clients = {}
        cpu0: dict[str, int] = {}
        for name, (argv, pythonpath) in configs.items():
            c = start_proxy(argv, ws, pythonpath)
            clients[name] = c
            cpu0[name] = cpu_ns(c.proc.pid)
        times: dict[str, list[float]] = {n: [] for n in configs}
        target = os.path.join(ws, "main.py")
        per_round = max(1, ns.calls // ns.rounds)
        for _ in range(ns.rounds):  # interleaved, so drift hits every configuration alike
            for name, c in clients.items():
                times[name] += round_trips(c, per_round, ns.warmup, target)
                # Let the sinks' background work of this round (a batch every 0.2 s) finish
                # before another proxy is timed: one machine runs all six proxies.
                time.sleep(ns.settle)
        # Each proxy's CPU over the whole run (warm-up calls and the pauses included, so the
        # sinks' background work is counted wherever it ran), per call.
        n_calls = ns.rounds * (per_round + ns.warmup)
        cpu = {n: (cpu_ns(c.proc.pid) - cpu0[n]) / 1000 / n_calls for n, c in clients.items()}
        for c in clients.values():
            c.close()
    base = times[NO_SINK]
    return [
        with_cpu(summary(name, times[name], base, run), cpu[name], cpu[NO_SINK]) for name in configs
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=4000, help="timed calls per configuration")
    # Many short rounds: this machine's slow phases last seconds, and 40 calls a round put
    # every configuration in each of them (20 rounds of 200 left ±20 µs between two identical
    # proxies, 100 of 40 leave a few µs).
    ap.add_argument("--rounds", type=int, default=100, help="interleaved rounds")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per round")
    ap.add_argument("--settle", type=float, default=0.25, help="pause after each round (s)")
    ap.add_argument("--repeat", type=int, default=1, help="whole runs (fresh proxies each)")
    ap.add_argument(
        "--against", metavar="DIR", help="also run the package in DIR (before/after in one run)"
    )
    ns = ap.parse_args()
    hang_sock, hang_url = hanging_listener()
    ok_srv, ok_url = answering_receiver()
    rows: list[dict] = []
    for run in range(1, ns.repeat + 1):
        for row in one_run(ns, run, hang_url, ok_url):
            rows.append(row)
            print(json.dumps(row), flush=True)
    if ns.repeat > 1:  # the spread of each configuration's difference over the runs
        for name in dict.fromkeys(r["config"] for r in rows):
            d_med = [r["median_vs_no_sink_us"] for r in rows if r["config"] == name]
            d_p95 = [r["p95_vs_no_sink_us"] for r in rows if r["config"] == name]
            d_cpu = [r["cpu_vs_no_sink_us"] for r in rows if r["config"] == name]
            print(
                json.dumps(
                    {
                        "config": name,
                        "median_vs_no_sink_us": [min(d_med), statistics.median(d_med), max(d_med)],
                        "p95_vs_no_sink_us": [min(d_p95), statistics.median(d_p95), max(d_p95)],
                        "cpu_vs_no_sink_us": [min(d_cpu), statistics.median(d_cpu), max(d_cpu)],
                        "as": "[min, median, max] over runs",
                    }
                )
            )
    hang_sock.close()
    ok_srv.shutdown()


if __name__ == "__main__":
    main()
