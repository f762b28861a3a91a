"""Run the real StdioProxy with hot reload on: a TableRef swapped by a PolicyReloader.

The same few lines `mcp-defense stdio` uses to wire reload in (see proxy/reload.py), kept
here so the reload tests and benchmark drive the real proxy whatever state the CLI is in.
Usage: python tests/reload_proxy_runner.py --policy P [--set k=v] --archetype A --record F
[--no-reload] -- SERVER...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcp_defense.events.record import open_recorder  # noqa: E402
from mcp_defense.policy.loader import load  # noqa: E402
from mcp_defense.proxy.reload import PolicyReloader, TableRef  # noqa: E402
from mcp_defense.proxy.stdio import StdioProxy  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", action="append", required=True)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--archetype", required=True)
    ap.add_argument("--record")
    ap.add_argument("--no-reload", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    variables = dict(s.split("=", 1) for s in a.sets)
    first = load(a.policy, variables)
    if first.table is None:
        print("\n".join(d.short() for d in first.errors), file=sys.stderr)
        return 2
    recorder = open_recorder(a.record, live=False)
    ref = TableRef(first.table)
    reloader = PolicyReloader(
        a.policy,
        variables,
        ref=ref,
        emit=recorder.emit,
        archetypes=[a.archetype],
        watch=not a.no_reload,
    )
    proxy = StdioProxy(command, archetype=a.archetype, get_table=ref.get, recorder=recorder)
    reloader.start()
    try:
        return proxy.run()
    finally:
        reloader.stop()
        recorder.close()


if __name__ == "__main__":
    sys.exit(main())
