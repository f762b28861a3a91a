"""Hot-reload latency: from a policy file write to the first decision under the new table.

Each round saves a new version of a marker rule the way editors do (write a temporary file,
rename it over) and times until a decision names the new version. Two ways to observe it:

* `inprocess`: a PolicyReloader swapping a TableRef, and a thread deciding a call every
  millisecond (what a runtime's hot path does), so the number is watch + debounce + load.
* `proxy`: the real `mcp-defense stdio` (reload on) in front of the raw server; a client sends the
  marker call back to back and stops the clock at the first answer denied by the new version.

Policies: `tiny` (one archetype, one rule) or `builtin` (the built-in pack plus the marker:
what a real deployment compiles on every reload).

    python benchmarks/bench_reload.py [--writes 30] [--via inprocess|proxy|both]
        [--policy tiny|builtin|both] [--step-ms 20] [--debounce-ms 500] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcp_defense.policy.facts import ToolCall  # noqa: E402
from mcp_defense.policy.loader import load  # noqa: E402
from mcp_defense.policy.reload import (  # noqa: E402
    DEFAULT_DEBOUNCE_MS,
    DEFAULT_STEP_MS,
    PolicyReloader,
    ReloadOutcome,
    TableRef,
)

TINY_MAIN = """import "markers.mcpd"

archetype ws {
  paths any
  network any
  spawn any
}

default allow "no rule matched"
"""
BUILTIN_MAIN = 'import "builtin:"\nimport "markers.mcpd"\n'
ARCHETYPE = {"tiny": "ws", "builtin": "filesystem"}
VARS = {"workspace": "/workspace"}
RAW_SERVER = [sys.executable, str(ROOT / "examples/servers/raw_server.py")]


def markers(k: int) -> str:
    return (
        f"rule marker_{k} priority 1000 {{\n"
        f'  when call.tool == "echo" && call.args.text == "m{k}"\n'
        f'  deny "marker {k}"\n'
        "}\n"
    )


def save_atomic(path: Path, text: str) -> float:
    """Write a temp file and rename it over `path`; returns the time of the rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    t0 = time.perf_counter()
    os.replace(tmp, path)
    return t0


def make_policy(d: Path, kind: str) -> tuple[Path, Path]:
    main = d / "main.mcpd"
    main.write_text(TINY_MAIN if kind == "tiny" else BUILTIN_MAIN)
    mk = d / "markers.mcpd"
    mk.write_text(markers(0))
    return main, mk


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


def summary(xs: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(xs), 1),
        "p95_ms": round(pct(xs, 95), 1),
        "max_ms": round(max(xs), 1),
        "mean_ms": round(statistics.fmean(xs), 1),
    }


def bench_inprocess(kind: str, writes: int, step_ms: int, debounce_ms: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        main, mk = make_policy(Path(tmp), kind)
        first = load([main], VARS)
        assert first.table is not None, [d.short() for d in first.errors]
        ref = TableRef(first.table)
        loads: list[float] = []

        def on_reload(out: ReloadOutcome) -> None:
            if out.swapped:
                loads.append(out.duration_ms)

        r = PolicyReloader(
            [main],
            VARS,
            ref=ref,
            stderr=None,
            archetypes=[ARCHETYPE[kind]],
            step_ms=step_ms,
            debounce_ms=debounce_ms,
            on_reload=on_reload,
        )
        r.start()
        assert r.wait_ready(60)
        target: list[Any] = [None, 0.0]  # version awaited, time first decided under it
        seen = threading.Event()
        stop = threading.Event()

        def decider() -> None:
            call = ToolCall(ARCHETYPE[kind], "echo", {"text": "m0"})
            while not stop.is_set():
                d = ref.table.decide(call)  # the runtime's hot path: one read, one decide
                if d.policy_version == target[0] and not seen.is_set():
                    target[1] = time.perf_counter()
                    seen.set()
                time.sleep(0.001)

        th = threading.Thread(target=decider, daemon=True)
        th.start()
        lat: list[float] = []
        try:
            for k in range(1, writes + 1):
                mk_text = markers(k)
                new_version = _version_with(main, mk, mk_text)
                seen.clear()
                target[0] = new_version
                t0 = save_atomic(mk, mk_text)
                if not seen.wait(30):
                    raise RuntimeError(f"write {k}: version {new_version} never came into force")
                lat.append((target[1] - t0) * 1e3)
                time.sleep(0.1)  # let the watcher settle: each write is its own reload
        finally:
            stop.set()
            th.join()
            r.stop()
        return {
            "via": "inprocess",
            "policy": kind,
            "writes": writes,
            "write_to_decision": summary(lat),
            "load": summary(loads),
        }


def _version_with(main: Path, mk: Path, text: str) -> str:
    """The version `text` will have, computed on a scratch copy (the real file untouched)."""
    with tempfile.TemporaryDirectory() as scratch:
        d = Path(scratch)
        (d / main.name).write_text(main.read_text())
        (d / mk.name).write_text(text)
        res = load([d / main.name], VARS)
        assert res.table is not None
        return res.table.version


def bench_proxy(kind: str, writes: int, step_ms: int, debounce_ms: int) -> dict[str, Any]:
    """End to end: the client's clock stops at the first answer denied by marker k."""
    del step_ms, debounce_ms  # `mcp-defense stdio` runs the reloader with its defaults
    with tempfile.TemporaryDirectory() as tmp:
        main, mk = make_policy(Path(tmp), kind)
        argv = [
            sys.executable, "-m", "mcp_defense.cli.main", "stdio", "--policy", str(main),
            "--set", f"workspace={VARS['workspace']}", "--archetype", ARCHETYPE[kind], "--",
            *RAW_SERVER,
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            stderr=subprocess.DEVNULL,
        )
        wfd, rfd = proc.stdin.fileno(), proc.stdout.fileno()  # type: ignore[union-attr]
        buf = [b""]

        def rpc(obj: dict[str, Any]) -> dict[str, Any]:
            os.write(wfd, (json.dumps(obj) + "\n").encode())
            while b"\n" not in buf[0]:
                chunk = os.read(rfd, 1 << 16)
                if not chunk:
                    raise EOFError("proxy exited")
                buf[0] += chunk
            line, buf[0] = buf[0].split(b"\n", 1)
            return json.loads(line)

        rpc(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "bench", "version": "1"},
                },
            }
        )
        os.write(wfd, b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        time.sleep(1.0)  # the reloader's first load (it primes its cache) is not measured
        lat: list[float] = []
        rid = 1
        try:
            for k in range(1, writes + 1):
                t0 = save_atomic(mk, markers(k))
                deadline = t0 + 30
                while True:
                    rid += 1
                    msg = rpc(
                        {
                            "jsonrpc": "2.0",
                            "id": rid,
                            "method": "tools/call",
                            "params": {"name": "echo", "arguments": {"text": f"m{k}"}},
                        }
                    )
                    if "error" in msg:
                        lat.append((time.perf_counter() - t0) * 1e3)
                        break
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"write {k}: never denied")
                time.sleep(0.1)
        finally:
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(30)
        return {
            "via": "proxy",
            "policy": kind,
            "writes": writes,
            "calls": rid,
            "write_to_decision": summary(lat),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writes", type=int, default=30)
    ap.add_argument("--via", choices=["inprocess", "proxy", "both"], default="both")
    ap.add_argument("--policy", choices=["tiny", "builtin", "both"], default="both")
    ap.add_argument("--step-ms", type=int, default=DEFAULT_STEP_MS)
    ap.add_argument("--debounce-ms", type=int, default=DEFAULT_DEBOUNCE_MS)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.writes < 20:
        ap.error("--writes must be at least 20 for a meaningful p95")
    results = []
    for kind in ["tiny", "builtin"] if a.policy == "both" else [a.policy]:
        if a.via in ("inprocess", "both"):
            results.append(bench_inprocess(kind, a.writes, a.step_ms, a.debounce_ms))
        if a.via in ("proxy", "both"):
            results.append(bench_proxy(kind, a.writes, a.step_ms, a.debounce_ms))
    if a.json:
        print(
            json.dumps(
                {"step_ms": a.step_ms, "debounce_ms": a.debounce_ms, "results": results}, indent=2
            )
        )
        return
    print(
        f"hot reload: file write → first decision under the new table "
        f"(step {a.step_ms} ms, debounce ≤ {a.debounce_ms} ms; target p95 ≤ 300 ms)"
    )
    for r in results:
        s = r["write_to_decision"]
        line = (
            f"  {r['via']:<9} {r['policy']:<7} {r['writes']} writes: p50 {s['p50_ms']:7.1f} ms"
            f"  p95 {s['p95_ms']:7.1f} ms  max {s['max_ms']:7.1f} ms"
        )
        if "load" in r:
            line += f"   (of which load+compile p50 {r['load']['p50_ms']:.1f} ms)"
        print(line)


if __name__ == "__main__":
    main()
