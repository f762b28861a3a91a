"""Call latency while the policy reloads under load, through the real `mcp-defense stdio`.

The proxy (reload on) runs in front of the raw line server over a policy of N generated rules
(`bench_lint.generate`) plus one marker rule. A client sends allowed `tools/call`s at a fixed
rate (open loop: one thread sends on schedule, another reads, so a stall shows on every call
queued behind it, not on one), first with no reload running (baseline), then while the policy
file is rewritten `--reloads` times, each a real change (the marker rule's text), each saved
the way editors do (temp file renamed over) only after the previous one is in force (the
proxy's "policy reloaded" line on stderr).

Reported: round-trip p50/p99/max with no reload running, during reloads (sent between a save
and its "policy reloaded" line) and between them; reloads done and their compile times (as
the proxy reports them); the proxy's RSS after start, after the first and after the last
reload (a leak across reloads shows as growth).

    python benchmarks/bench_reload_load.py [--rules 10000] [--reloads 50] [--rate 500]
        [--baseline-s 5] [--gap-s 0.2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_lint import generate  # noqa: E402
from bench_proxy import INIT, SERVERS, rss_kib  # noqa: E402
from bench_reload import pct, save_atomic  # noqa: E402

ARCHETYPE = "filesystem"
RELOADED = re.compile(r"policy reloaded (\S+) → (\S+) \((.*), (\d+) ms\)")
START_TIMEOUT_S = 600.0  # the first compile of a large policy (twice: start-up, then primed)
RELOAD_TIMEOUT_S = 300.0


def policy_text(rules: int, k: int) -> str:
    """N generated rules and marker k: each k is a different policy version."""
    return (
        generate(rules)
        + f'\nrule marker priority 1000 {{\n  when call.tool == "marker_{k}"\n'
        + f'  deny "marker {k}"\n}}\n'
    )


class Proxy:
    """`mcp-defense stdio` over the raw server; stderr lines are watched for reloads."""

    def __init__(self, policy: Path, workspace: str) -> None:
        argv = [
            sys.executable, "-m", "mcp_defense.cli.main", "stdio", "--policy", str(policy),
            "--archetype", ARCHETYPE, "--set", f"workspace={workspace}", "--pins", "off",
            "--", *SERVERS["raw"],
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            cwd=workspace,
        )
        self.wfd = self.proc.stdin.fileno()  # type: ignore[union-attr]
        self.rfd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self.cond = threading.Condition()
        self.reloads: list[tuple[float, str, str, str, int]] = []  # (t, old, new, what, ms)
        self.stderr_tail: list[str] = []
        threading.Thread(target=self._stderr, daemon=True).start()

    def _stderr(self) -> None:
        for raw in self.proc.stderr:  # type: ignore[union-attr]
            line = raw.decode(errors="replace").rstrip("\n")
            t = time.perf_counter()
            with self.cond:
                self.stderr_tail = (self.stderr_tail + [line])[-20:]
                m = RELOADED.search(line)
                if m:
                    old, new, what, ms = m.groups()
                    self.reloads.append((t, old, new, what, int(ms)))
                self.cond.notify_all()

    def wait_reload(self, count: int, timeout: float) -> tuple[float, str, str, str, int]:
        """Block until `count` reloads have been announced; return the last one."""
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.reloads) >= count, timeout):
                tail = "\n".join(self.stderr_tail)
                raise RuntimeError(f"reload {count} not announced in {timeout:.0f} s:\n{tail}")
            if any("reload failed" in x for x in self.stderr_tail):
                raise RuntimeError("a reload failed:\n" + "\n".join(self.stderr_tail))
            return self.reloads[count - 1]

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view) :]

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Load:
    """Open-loop client: `rate` calls per second (0: back to back, one in flight)."""

    def __init__(self, proxy: Proxy, rate: float, path: str) -> None:
        self.proxy = proxy
        self.rate = rate
        params = {"name": "read_file", "arguments": {"path": path}}
        self.head = b'{"jsonrpc":"2.0","method":"tools/call","params":'
        self.head += json.dumps(params, separators=(",", ":")).encode() + b',"id":'
        self.sent: dict[int, float] = {}
        self.done: list[tuple[float, float]] = []  # (send time, round trip s)
        self.errors = 0
        self.stop = threading.Event()
        self.inflight = threading.Semaphore(1) if rate <= 0 else None
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.writer = threading.Thread(target=self._write, daemon=True)

    def start(self) -> None:
        self.reader.start()
        self.writer.start()

    def finish(self) -> None:
        self.stop.set()
        self.writer.join()
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            with self.lock:
                if len(self.done) + self.errors >= len(self.sent):
                    return
            time.sleep(0.01)

    def _write(self) -> None:
        i = 0
        t_start = time.perf_counter()
        while not self.stop.is_set():
            i += 1
            if self.inflight is not None:
                self.inflight.acquire()
            else:
                delay = t_start + i / self.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            data = self.head + str(i).encode() + b"}\n"
            with self.lock:
                self.sent[i] = time.perf_counter()
            self.proxy.send(data)

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self.proxy.rfd, 1 << 16)
            if not chunk:
                return
            t = time.perf_counter()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                msg = json.loads(line)
                rid = msg.get("id")
                with self.lock:
                    t0 = self.sent.get(rid) if isinstance(rid, int) else None
                    if t0 is None:
                        continue
                    if "error" in msg or msg.get("result", {}).get("isError"):
                        self.errors += 1
                    else:
                        self.done.append((t0, t - t0))
                if self.inflight is not None:
                    self.inflight.release()


def stats(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"calls": 0}
    ms = [x * 1e3 for x in xs]
    return {
        "calls": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


def run(rules: int, reloads: int, rate: float, baseline_s: float, gap_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        (ws / "main.py").write_text("print('hello')\n")
        pdir = ws / "policy"
        pdir.mkdir()
        policy = pdir / "main.mcpd"
        policy.write_text(policy_text(rules, 0))
        t0 = time.perf_counter()
        proxy = Proxy(policy, str(ws))
        try:
            proxy.send((json.dumps(INIT) + "\n").encode())
            buf = b""
            while b"\n" not in buf:
                chunk = os.read(proxy.rfd, 1 << 16)
                if not chunk:
                    raise RuntimeError("proxy exited:\n" + "\n".join(proxy.stderr_tail))
                buf += chunk
            proxy.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
            started_s = time.perf_counter() - t0
            # The reloader's first (priming) load runs in the background: a SIGHUP queues a
            # reload behind it, and its "reloaded … (unchanged)" line says both are done.
            proxy.proc.send_signal(signal.SIGHUP)
            proxy.wait_reload(1, START_TIMEOUT_S)
            rss_start = rss_kib(proxy.proc.pid)
            load = Load(proxy, rate, str(ws / "main.py"))
            load.start()
            time.sleep(baseline_s)
            t_base_end = time.perf_counter()
            windows: list[tuple[float, float]] = []
            compile_ms: list[int] = []
            rss_first = 0
            for k in range(1, reloads + 1):
                t_write = save_atomic(policy, policy_text(rules, k))
                t_applied, _old, _new, what, ms = proxy.wait_reload(k + 1, RELOAD_TIMEOUT_S)
                if what == "unchanged":
                    raise RuntimeError(f"reload {k} did not change the policy")
                windows.append((t_write, t_applied))
                compile_ms.append(ms)
                if k == 1:
                    rss_first = rss_kib(proxy.proc.pid)
                time.sleep(gap_s)
            load.finish()
            rss_last = rss_kib(proxy.proc.pid)
        finally:
            proxy.close()
    base: list[float] = []
    during: list[float] = []
    between: list[float] = []
    for ts, rt in load.done:
        if ts < t_base_end:
            base.append(rt)
        elif any(a <= ts <= b for a, b in windows):
            during.append(rt)
        else:
            between.append(rt)
    return {
        "rules": rules,
        "rate_per_s": rate,
        "start_s": round(started_s, 2),
        "reloads": len(windows),
        "compile_ms": stats([m / 1e3 for m in compile_ms]) if compile_ms else {},
        "save_to_applied_ms": stats([b - a for a, b in windows]),
        "no_reload": stats(base),
        "during_reload": stats(during),
        "between_reloads": stats(between),
        "failed_calls": load.errors,
        "unanswered": len(load.sent) - len(load.done) - load.errors,
        "rss_mib": {
            "start": round(rss_start / 1024, 1),
            "after_first_reload": round(rss_first / 1024, 1),
            "after_last_reload": round(rss_last / 1024, 1),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--reloads", type=int, default=50)
    ap.add_argument("--rate", type=float, default=500.0, help="calls/s; 0: back to back")
    ap.add_argument("--baseline-s", type=float, default=5.0)
    ap.add_argument("--gap-s", type=float, default=0.2, help="pause after each reload")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = run(a.rules, a.reloads, a.rate, a.baseline_s, a.gap_s)
    if a.json:
        print(json.dumps(r, indent=2))
        return
    rate = f"{a.rate:g} calls/s" if a.rate > 0 else "back to back"
    print(
        f"call latency during hot reloads: {r['rules']:,} rules, {r['reloads']} reloads, "
        f"{rate} (target: p99 during reloads ≤ 50 ms)"
    )
    for name in ("no_reload", "during_reload", "between_reloads"):
        s = r[name]
        if s["calls"]:
            print(
                f"  {name.replace('_', ' '):<16} {s['calls']:6} calls  p50 {s['p50_ms']:7.2f} ms"
                f"  p99 {s['p99_ms']:7.2f} ms  max {s['max_ms']:8.2f} ms"
            )
    c, w = r["compile_ms"], r["save_to_applied_ms"]
    print(
        f"  reload (proxy's figure)  p50 {c['p50_ms']:.0f} ms  max {c['max_ms']:.0f} ms;"
        f" save → applied p50 {w['p50_ms']:.0f} ms  max {w['max_ms']:.0f} ms"
    )
    m = r["rss_mib"]
    print(
        f"  proxy RSS: {m['start']} MiB at start, {m['after_first_reload']} after the first"
        f" reload, {m['after_last_reload']} after the last;"
        f" failed calls {r['failed_calls']}, unanswered {r['unanswered']}"
    )


if __name__ == "__main__":
    main()
