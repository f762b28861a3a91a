"""An MCP-ish stdio server that misbehaves on purpose (tests only).

Flags: --ignore-term (ignore SIGTERM and SIGINT), --ignore-eof (keep running after stdin
closes). Tools: `pid` answers its pid, `hang` never answers, `close_stdout` closes its
stdout and keeps running. Every received line is appended to --log FILE if given.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def main() -> None:
    args = sys.argv[1:]
    if "--ignore-term" in args:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    log = args[args.index("--log") + 1] if "--log" in args else ""
    for raw in sys.stdin.buffer:
        if log:
            with open(log, "ab") as f:
                f.write(raw)
        msg = json.loads(raw)
        if "id" not in msg or "method" not in msg:
            continue
        result: object = {}
        if msg["method"] == "tools/call":
            name = msg["params"]["name"]
            if name == "hang":
                continue
            if name == "close_stdout":
                os.close(1)
                continue
            result = {"content": [{"type": "text", "text": str(os.getpid())}]}
        reply = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n"
        try:
            os.write(1, reply.encode())
        except OSError:
            pass
    while "--ignore-eof" in args:
        time.sleep(1)


if __name__ == "__main__":
    main()
