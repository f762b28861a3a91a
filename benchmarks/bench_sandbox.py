"""What `stdio --sandbox` adds to a server's start: compiling the ruleset in the proxy, and
the exec trampoline (a bare `python -I -S` that applies Landlock, then execs the server).

Each round starts `/bin/true` directly and through the trampoline (filesystem archetype of
the built-in pack), and the Python SDK server's interpreter (`python -c pass`) both ways.

    python benchmarks/bench_sandbox.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import mcp_defense
from mcp_defense.sandbox.landlock import abi_version
from mcp_defense.sandbox.plan import compile_plan, prepare


def _median_ms(argv: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    abi, why = abi_version()
    print(f"Landlock ABI {abi}" + (f" ({why})" if why else ""))
    table = mcp_defense.compile(None, {"workspace": "/tmp"})
    for server in (["/bin/true"], [sys.executable, "-c", "pass"]):
        t0 = time.perf_counter()
        for _ in range(args.rounds):
            plan = compile_plan(table, "filesystem", server)
        compile_ms = (time.perf_counter() - t0) * 1000 / args.rounds
        launch = prepare(table, "filesystem", server, "on")
        direct = _median_ms(server, args.rounds)
        boxed = _median_ms([*launch.launcher, *server], args.rounds)
        print(
            f"{server[0]:<40} ruleset compile {compile_ms:6.1f} ms ({len(plan.fs)} rules) · "
            f"start direct {direct:6.1f} ms · sandboxed {boxed:6.1f} ms · "
            f"added {boxed - direct:+6.1f} ms"
        )


if __name__ == "__main__":
    main()
