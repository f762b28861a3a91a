"""Added cost of the built-in response rules on a 1 MiB and a 16 MiB result.

One ProxySession with the built-in pack, one without response rules, same messages: the
time `server_message` takes for a tools/call result that holds no secret (one linear scan of
its bytes, no parse), and for one with a secret at its end (parse, scan every string,
redact, re-serialise). Median of several runs.

    python benchmarks/bench_response.py
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from mcp_defense.policy.loader import load
from mcp_defense.proxy.session import ProxySession

ROOT = Path(__file__).resolve().parents[1]
KEY = "\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n"


def table(paths: list[str] | None) -> object:
    result = load(paths, {"workspace": str(ROOT)})
    assert result.table is not None, result.diagnostics
    return result.table


def result_line(rid: int, size: int, secret: bool) -> bytes:
    text = "lorem ipsum dolor sit amet " * (size // 27)
    if secret:
        text += KEY
    msg = {"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}]}}
    return json.dumps(msg).encode()


def time_result(t: object, line_for: object, runs: int) -> float:
    times = []
    for i in range(runs):
        s = ProxySession(archetype="filesystem", get_table=lambda: t)  # type: ignore[arg-type,return-value]
        call = {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": "read_file", "arguments": {"path": "README.md"}},
        }
        s.client_message(json.dumps(call).encode())
        line = line_for(i)  # type: ignore[operator]
        t0 = time.perf_counter()
        s.server_message(line)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    builtin = table(None)
    bare = table([str(ROOT / "tests" / "data" / "no_response_rules.mcpd")])
    print(f"{'result':<22} {'no response rules ms':>21} {'built-in rules ms':>18} {'added ms':>9}")
    for size, runs in ((1 << 20, 15), (16 << 20, 5)):
        for secret in (False, True):
            label = f"{size >> 20} MiB, {'a key' if secret else 'no secret'}"
            a = time_result(bare, lambda i, s=size, k=secret: result_line(i, s, k), runs)
            b = time_result(builtin, lambda i, s=size, k=secret: result_line(i, s, k), runs)
            print(f"{label:<22} {a:>21.2f} {b:>18.2f} {b - a:>9.2f}")


if __name__ == "__main__":
    main()
