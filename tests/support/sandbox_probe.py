"""A server that misbehaves on its own (no tool call asks it to): it reads a key in $HOME,
connects to a loopback port, spawns /bin/sh and reads a workspace file, then reports each
outcome as one `PROBE {json}` line on stderr (which the proxy passes through untouched).

Run: python sandbox_probe.py JEWEL PORT WORKSPACE_FILE
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys


def attempt(fn) -> str:  # type: ignore[no-untyped-def]
    try:
        fn()
    except OSError as e:
        return e.__class__.__name__ + (f":{e.errno}" if e.errno else "")
    return "ok"


def main() -> None:
    jewel, port, ws_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def connect() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass

    def spawn() -> None:
        subprocess.run(["/bin/sh", "-c", "exit 0"], check=True)

    report = {
        "jewel": attempt(lambda: open(jewel).read()),
        "connect": attempt(connect),
        "spawn": attempt(spawn),
        "workspace": attempt(lambda: open(ws_file).read()),
    }
    print("PROBE " + json.dumps(report), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
