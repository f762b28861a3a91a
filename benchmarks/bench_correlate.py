"""Correlator benchmarks.

1. Flows joined per second with 10,000 open sessions (2,500 servers x 4 concurrent calls,
   80 % of servers in a cgroup of their own, the rest joined by pid; flows: 70 % by cgroup,
   15 % by server pid, 5 % from a grandchild of a server, 10 % orphans), with calls closing
   and opening as flows arrive (10,000 calls stay open) so expiry runs too. Reported for `join()` alone and for the
   full `on_flow()` (join + a constant decision + building and emitting the FlowEvent).
2. Time from connect() in a real server process to that process being dead (SIGKILL sent
   and death verified), with the procfs source at its default 20 ms interval; median of N.

    python benchmarks/bench_correlate.py [--flows 200000] [--runs 15]
"""

from __future__ import annotations

import argparse
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_defense.correlate.correlator import Correlator  # noqa: E402
from mcp_defense.correlate.proctree import ProcTree  # noqa: E402
from mcp_defense.correlate.sources.procfs import DEFAULT_INTERVAL_S, ProcfsSource  # noqa: E402
from mcp_defense.policy.facts import Action, Decision, FlowFacts, JoinSpec  # noqa: E402

SESSIONS = 10_000
CALLS_PER_SERVER = 4
STEP_S = 1e-4  # simulated time between flows: 10k flows/s of traffic, so expiry happens


def build(rng: random.Random) -> tuple[Correlator, list[FlowFacts], list, list[deque[str]]]:
    decision = Decision(Action.ALLOW, "egress_ok", "allowed", "bench")
    sink: list = []
    tree = ProcTree(live=False)
    c = Correlator(JoinSpec(window_s=5.0), lambda f, o: decision, sink.append, proctree=tree)
    servers = SESSIONS // CALLS_PER_SERVER
    t0 = time.time() - 3600  # in the past: expiry never runs ahead of the wall clock
    calls: list[deque[str]] = []
    for s in range(servers):
        pid = 100_000 + s
        cgroup = 9_000_000 + s if s % 5 else 0  # every fifth server shares the proxy's cgroup
        tree.learn(500_000 + s, pid)  # one grandchild per server
        calls.append(deque())
        for k in range(CALLS_PER_SERVER):
            c.open_call(f"tc_{s}_{k}", t0, server_pid=pid, cgroup_id=cgroup)
            calls[s].append(f"tc_{s}_{k}")
    flows = []
    for i in range(200_000):
        s = rng.randrange(servers)
        r = rng.random()
        ts = t0 + 1 + i * STEP_S
        if r < 0.70 and s % 5:
            f = FlowFacts(
                dst_ip="140.82.112.5", dst_port=443, pid=100_000 + s, cgroup_id=9_000_000 + s, ts=ts
            )
        elif r < 0.85:
            f = FlowFacts(dst_ip="140.82.112.5", dst_port=443, pid=100_000 + s, ts=ts)
        elif r < 0.90:
            f = FlowFacts(dst_ip="203.0.113.9", dst_port=8443, pid=500_000 + s, ts=ts)
        else:
            f = FlowFacts(
                dst_ip="198.51.100.7", dst_port=4444, pid=900_000 + i % 1000, cgroup_id=1, ts=ts
            )
        flows.append(f)
    return c, flows, sink, calls


def run(
    c: Correlator, flows: list[FlowFacts], calls: list[deque[str]], n: int, full: bool, sink: list
) -> tuple[float, float, int]:
    """Feed n flows; every 10th flow one call ends and the same server starts another, so
    there are always 10,000 open calls and closed ones expire through the heap."""
    servers = len(calls)
    joined = 0
    peak = 0
    start = time.thread_time()  # CPU time of this thread: other load on the box does not count
    for i in range(n):
        f = flows[i % len(flows)]
        if full:
            joined += len(c.on_flow(f, "bench"))
            if i % 10_000 == 0:
                sink.clear()
        else:
            joined += len(c.join(f))
        if i % 10 == 0:
            s = (i // 10) % servers
            q = calls[s]
            c.close_call(q.popleft(), f.ts)
            cid = f"tc_{s}_n{i}"
            c.open_call(cid, f.ts, server_pid=100_000 + s, cgroup_id=9_000_000 + s if s % 5 else 0)
            q.append(cid)
            if i % 1000 == 0:
                peak = max(peak, len(c._sessions))
    rate = n / (time.thread_time() - start)
    return rate, joined / n, peak


def bench_join(n: int, reps: int = 3) -> tuple[float, float]:
    """Median of `reps` runs of n flows each, for join() and for on_flow()."""
    join_rates, full_rates = [], []
    for _ in range(reps):
        c, flows, sink, calls = build(random.Random(7))
        assert c.open_sessions == SESSIONS
        rate, per_flow, peak = run(c, flows, calls, n, False, sink)
        join_rates.append(rate)
        c2, flows2, sink2, calls2 = build(random.Random(7))
        full_rates.append(run(c2, flows2, calls2, n, True, sink2)[0])
    print(
        f"  open calls: {SESSIONS} throughout; indexed incl. closed-but-in-window: up to {peak}; "
        f"calls joined per flow: {per_flow:.2f}; orphans: {c2.orphans / n:.0%}; "
        f"median of {reps} runs"
    )
    return statistics.median(join_rates), statistics.median(full_rates)


SERVER = r"""
import socket, sys, time
port = int(sys.argv[1])
sys.stdin.readline()
print(repr(time.time()), flush=True)
s = socket.create_connection(("127.0.0.1", port))
time.sleep(60)
"""


def bench_kill(runs: int, interval: float) -> tuple[list[float], list[float]]:
    tmp = Path(tempfile.mkdtemp())
    script = tmp / "server.py"
    script.write_text(SERVER)
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(128)
    port = lst.getsockname()[1]
    out: list[float] = []
    kill_only: list[float] = []
    kill = Decision(Action.KILL, "egress_outside_archetype", "network none", "bench")
    phase = random.Random(11)
    for _ in range(runs):
        dead_at: list[float] = []
        done = threading.Event()

        def on_kill(report, ev, dead_at=dead_at, done=done) -> None:
            if report.dead:
                dead_at.append(time.time())
                kill_only.append(report.elapsed_s)
            done.set()

        server = subprocess.Popen(
            [sys.executable, str(script), str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        c = Correlator(JoinSpec(), lambda f, o: kill, lambda ev: None, on_kill=on_kill)
        c.register_server(server.pid)
        c.open_call("tc_bench", server_pid=server.pid)
        src = ProcfsSource(lambda pid=server.pid: [pid], interval_s=interval, proctree=c.proctree)
        c.add_source(src)
        while src.scans < 3:
            time.sleep(0.005)
        # Connect at a random phase of the polling cycle, as a real server would.
        time.sleep(phase.uniform(0, interval))
        server.stdin.write("go\n")
        server.stdin.flush()
        t_connect = float(server.stdout.readline())
        ok = done.wait(10)
        c.close()
        rc = server.wait(10)
        if not ok or not dead_at or rc != -signal.SIGKILL:
            raise SystemExit(f"kill run failed: ok={ok} rc={rc}")
        out.append(dead_at[0] - t_connect)
        time.sleep(0.05)
    lst.close()
    return out, kill_only


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    print(f"correlator join, {args.flows} flows")
    join_rate, full_rate = bench_join(args.flows)
    print(
        f"  join() only:                              {join_rate:>10,.0f} flows/s (per CPU-second)"
    )
    print(
        f"  on_flow() (join+decide+FlowEvent+emit):   {full_rate:>10,.0f} flows/s (per CPU-second)"
    )
    print(
        f"connect() -> dead, procfs source every {DEFAULT_INTERVAL_S * 1000:.0f} ms, {args.runs} runs"
    )
    lat, kill_only = bench_kill(args.runs, DEFAULT_INTERVAL_S)
    ms = sorted(x * 1000 for x in lat)
    print(
        f"  median {statistics.median(ms):.1f} ms  (min {ms[0]:.1f}, max {ms[-1]:.1f}, "
        f"p90 {ms[int(0.9 * (len(ms) - 1))]:.1f})"
    )
    print(
        f"  of which SIGSTOP/walk/SIGKILL/verified death: median "
        f"{statistics.median(kill_only) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
