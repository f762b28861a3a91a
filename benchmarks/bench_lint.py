"""`policy lint` wall time: the built-in pack and a generated policy of N rules.

Each figure is the best of `--repeat` runs of the real command in a subprocess (start-up
included, as CI sees it), then the time of the checks alone (`loader.check`,
what lint runs) beside a full compile (`loader.load`, what the proxy runs), start-up excluded.

    python benchmarks/bench_lint.py [--rules 10000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Rules of every shape the pack uses: indexed tool rules with guarded arguments, archetype
# conditions the compiler folds, comprehensions over facts, flow and orphan rules.
SHAPES = (
    'rule r{i} priority {p} {{\n  when call.tool == "tool_{i}" && has(call.args.path)'
    ' && call.args.path.startsWith("/srv/{i}/")\n  deny "r{i}: {{path}}"\n}}\n',
    "rule r{i} priority {p} learn {{\n  when call.spawns && !archetype.spawn"
    ' && call.programs.exists(p, p == "prog{i}")\n  deny "r{i}"\n}}\n',
    "rule r{i} priority {p} for web-fetch {{\n  when call.network"
    ' && call.hosts.exists(h, h.endsWith(".h{i}.example") && !is_private(h))\n'
    '  approve "r{i}: {{host}}"\n}}\n',
    'rule r{i} priority {p} {{\n  when call.writes && call.paths.exists(p, glob(p, "/data/{i}/**")'
    ' && !archetype.allows_write(p))\n  alert "r{i}: {{path}}"\n}}\n',
    "flow rule r{i} priority {p} {{\n  when flow.dst_port == {port}"
    ' && archetype.network != "none"\n  alert "r{i}"\n}}\n',
    'orphan rule r{i} priority {p} {{\n  when flow.host == "h{i}.example"\n  alert "r{i}"\n}}\n',
)


def generate(n: int) -> str:
    out = ['import "builtin:archetypes.mcpd"\n', 'default allow "no rule matched"\n']
    for i in range(n):
        out.append(SHAPES[i % len(SHAPES)].format(i=i, p=i % 100, port=1 + i % 65000))
    return "\n".join(out)


def wall(args: list[str], repeat: int) -> tuple[float, str]:
    best, last = float("inf"), ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = subprocess.run(
            [sys.executable, "-m", "mcp_defense.cli.main", "policy", "lint", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        best = min(best, time.perf_counter() - t0)
        last = (r.stdout.strip().splitlines() or [""])[-1]
    return best, last


_TIMED = """
import sys, time
from mcp_defense.policy import loader
t0 = time.perf_counter()
getattr(loader, sys.argv[1])(sys.argv[2:])
print(time.perf_counter() - t0)
"""


def in_process(paths: list[str]) -> dict[str, float]:
    """The call alone (`loader.check` or `loader.load`), each in a fresh interpreter: the
    CEL parser's caches would make the second one look cheaper."""
    out = {}
    for fn in ("check", "load"):
        r = subprocess.run(
            [sys.executable, "-c", _TIMED, fn, *paths],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        out[f"{fn}_s"] = round(float(r.stdout.strip()), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        gen = Path(d) / "generated.mcpd"
        gen.write_text(generate(a.rules))
        for name, args in (("builtin", [str(ROOT / "policies")]), ("generated", [str(gen)])):
            s, summary = wall(args, a.repeat)
            results[name] = {"seconds": round(s, 3), "summary": summary, **in_process(args)}
    results["rules"] = a.rules
    if a.json:
        print(json.dumps(results, indent=2))
        return
    for name in ("builtin", "generated"):
        r = results[name]
        label = f"{a.rules:,} generated rules" if name == "generated" else "built-in pack"
        print(f"policy lint, {label}: {r['seconds']:.2f} s  ({r['summary']})")
        print(f"  in process: checks {r['check_s']:.2f} s, full compile {r['load_s']:.2f} s")


if __name__ == "__main__":
    main()
