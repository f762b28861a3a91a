"""Seconds to parse the `when`s of a generated policy (bench_lint's shapes): the hand-written
CEL parser (`cel/syntax.py`) beside the lark pipeline it replaced (tests/support/
cel_lark_oracle.py: lark LALR over cel-python's `cel.lark`, then the old tree converter).

    python benchmarks/bench_cel_parse.py [--rules 10000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_lint import generate  # noqa: E402
from support import cel_lark_oracle  # noqa: E402

from mcp_defense.policy.cel import syntax  # noqa: E402


def best(f: Callable[[], object], repeat: int) -> float:
    out = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        out = min(out, time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    whens = re.findall(r"when (.*)\n", generate(a.rules))
    cel_lark_oracle._parser()  # LALR tables built (or read from lark's cache) beforehand
    new = best(lambda: [syntax.parse(w) for w in whens], a.repeat)
    old = best(lambda: [cel_lark_oracle.parse_to_node(w) for w in whens], a.repeat)
    if a.json:
        print(json.dumps({"whens": len(whens), "parser_s": new, "lark_s": old}))
        return
    print(
        f"{len(whens)} whens: parser {new:.3f} s ({new / len(whens) * 1e6:.0f} µs each), ", end=""
    )
    print(f"lark + converter {old:.3f} s ({old / len(whens) * 1e6:.0f} µs each)")


if __name__ == "__main__":
    main()
