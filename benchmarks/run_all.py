"""Run every benchmark and print its figures: `python benchmarks/run_all.py [NAME...]`.

Benchmarks print numbers; they never assert. Each runs in its own process so one's warm
caches do not flatter another's. Names: policy (the `policy bench` command), cel, extract,
proxy, http, response, replay, reload, reload-load, correlate, sandbox, hook, sinks, globs, lint.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = {
    "policy": [sys.executable, "-m", "mcp_defense", "policy", "bench"],
    "cel": [sys.executable, str(HERE / "bench_cel.py")],
    "cel-parse": [sys.executable, str(HERE / "bench_cel_parse.py")],
    "extract": [sys.executable, str(HERE / "bench_extract.py")],
    "proxy": [sys.executable, str(HERE / "bench_proxy.py")],
    "http": [sys.executable, str(HERE / "bench_http.py")],
    "response": [sys.executable, str(HERE / "bench_response.py")],
    "replay": [sys.executable, str(HERE / "bench_replay.py")],
    "reload": [sys.executable, str(HERE / "bench_reload.py")],
    "reload-load": [sys.executable, str(HERE / "bench_reload_load.py")],
    "correlate": [sys.executable, str(HERE / "bench_correlate.py")],
    "sandbox": [sys.executable, str(HERE / "bench_sandbox.py")],
    "hook": [sys.executable, str(HERE / "bench_hook.py")],
    "sinks": [sys.executable, str(HERE / "bench_sinks.py")],
    "globs": [sys.executable, str(HERE / "bench_globs.py")],
    "lint": [sys.executable, str(HERE / "bench_lint.py")],
}


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(RUNS)}")
        return 2
    failed = 0
    for name in names or list(RUNS):
        print(f"\n=== {name} " + "=" * (60 - len(name)), flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(RUNS[name], cwd=HERE.parent, check=False).returncode
        print(f"--- {name}: {time.perf_counter() - t0:.1f} s, exit {rc}", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
