"""µs per evaluation: lowered CEL closures vs cel-cpp and cel-python, for five `when`s.

    python benchmarks/bench_cel.py [--iterations N] [--celpy-iterations N]

The lowered closures are what the decision table runs; cel-cpp (the `cel-expr-python`
bindings, data converted beforehand) is the oracle the differential tests compare them with,
cel-python the library whose grammar parses them. Archetype and vars are folded as the compiler does. The
functions are cheap stand-ins (set and dict lookups, like the compiler's precompiled matchers)
so the numbers show the cost of the lowering itself; the "python" column is the same logic
hand-written as a lambda, the floor a closure compiler could reach.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.cel_oracle import CelCpp  # noqa: E402
from support.cel_reference import reference_evaluate  # noqa: E402

from mcp_defense.policy import cel, schema  # noqa: E402
from mcp_defense.policy.facts import CallFacts, FlowFacts  # noqa: E402

JEWELS = {"/home/u/.ssh/id_ed25519": "crown", "/w/.env": "auth"}
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
LINK_LOCAL = frozenset({"169.254.169.254", "fe80::1"})
PRIVATE = frozenset({"10.1.2.3", "192.168.0.1"})


@dataclass(frozen=True)
class Arch:
    name: str = "github"
    network: str = "list"
    spawn: bool = True
    learning: bool = False
    programs: frozenset[str] = frozenset({"git"})
    hosts: frozenset[str] = frozenset({"api.github.com"})


FUNCTIONS: dict[str, Any] = {
    "jewel": lambda p: JEWELS.get(p, ""),
    "is_loopback": LOOPBACK.__contains__,
    "is_link_local": LINK_LOCAL.__contains__,
    "is_private": PRIVATE.__contains__,
    "allows_program": lambda a, p: p in a.programs,
    "allows_flow": lambda a, f: f.host in a.hosts,
}
jewel, is_loopback, is_link_local, is_private = (
    FUNCTIONS[k] for k in ("jewel", "is_loopback", "is_link_local", "is_private")
)
ARCH = Arch()
WS = "/w"

EXPRESSIONS: list[tuple[str, str, Any]] = [
    (
        "crown jewel (exists, 2 paths)",
        'call.paths.exists(p, jewel(p) == "crown")',
        lambda c: any(jewel(p) == "crown" for p in c.call.paths),
    ),
    (
        "spawn outside archetype",
        "call.spawns && archetype.spawn && call.programs.exists(p, !archetype.allows_program(p))",
        lambda c: c.call.spawns and any(p not in ARCH.programs for p in c.call.programs),
    ),
    (
        "private hosts (exists, ||)",
        "call.hosts.exists(h, is_loopback(h) || is_link_local(h) || is_private(h))",
        lambda c: any(is_loopback(h) or is_link_local(h) or is_private(h) for h in c.call.hosts),
    ),
    (
        "tool + dyn argument",
        'call.tool == "write_file" && has(call.args.path) && '
        'call.args.path.startsWith(vars.workspace + "/.git/")',
        lambda c: (
            c.call.tool == "write_file"
            and "path" in c.call.args
            and c.call.args["path"].startswith(WS + "/.git/")
        ),
    ),
    (
        "flow egress",
        "!archetype.allows_flow(flow) && flow.dst_port != 53",
        lambda c: c.flow.host not in ARCH.hosts and c.flow.dst_port != 53,
    ),
]


class Ctx:
    __slots__ = ("call", "flow", "agent", "session", "archetype", "vars", "witness")

    def __init__(self, call: CallFacts, flow: FlowFacts) -> None:
        self.call, self.flow = call, flow
        self.agent = self.session = None
        self.archetype, self.vars, self.witness = ARCH, {"workspace": WS}, {}


def bench(fn: Any, arg: Any, number: int) -> float:
    return min(timeit.repeat(lambda: fn(arg), number=number, repeat=7)) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--iterations", type=int, default=200_000)
    ap.add_argument("--celpy-iterations", type=int, default=200)
    args = ap.parse_args()
    env = cel.CelEnv(frozenset(schema.VARIABLES), ("workspace",), FUNCTIONS)
    call = CallFacts(
        "write_file",
        {"path": "/w/.git/config", "content": "x"},
        paths=("/w/src/main.py", "/home/u/.ssh/id_ed25519"),
        hosts=("api.github.com", "10.1.2.3"),
        programs=("git", "curl"),
        writes=True,
        spawns=True,
    )
    ctx = Ctx(call, FlowFacts(dst_ip="10.1.2.3", dst_port=443, host="evil.example", pid=7))
    act = {"call": call, "flow": ctx.flow, "archetype": ARCH, "vars": ctx.vars}
    consts = {"archetype": ARCH, "vars": ctx.vars}
    oracle = CelCpp(env)
    data = oracle.data(act)
    print(
        f"{'expression':32} {'lowered µs':>10} {'python µs':>10} {'cel-cpp µs':>10} "
        f"{'celpy µs':>9} {'vs celpy':>9}"
    )
    for label, src, hand in EXPRESSIONS:
        low = cel.lower(cel.parse(src), env, consts)
        want = reference_evaluate(src, act, env)
        assert low.fn(ctx) == want == hand(ctx) == oracle.run(src, data), src
        fast = bench(low.fn, ctx, args.iterations)
        floor = bench(hand, ctx, args.iterations)
        cpp = bench(lambda d, s=src: oracle.run(s, d), data, args.iterations // 10)
        slow = bench(lambda a, s=src: reference_evaluate(s, a, env), act, args.celpy_iterations)
        print(f"{label:32} {fast:10.2f} {floor:10.2f} {cpp:10.2f} {slow:9.0f} {slow / fast:8.0f}x")


if __name__ == "__main__":
    main()
