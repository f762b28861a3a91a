"""`mcp-defense demo` for real: a subprocess running the real proxies, SDK server and client.

Checks the exit code, the scenario table, and the *shape* of the output (which kind of line
comes where), which must be the same on every run: only times, ids, pids, ports and paths vary.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.stdio_helpers import child_env

pytestmark = pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")

ROWS = [
    ("1", "allowed read", "allow", "allow", "result"),
    ("2", "crown-jewel read", "deny", "deny", "refused: deny"),
    ("3", "spawn a process", "deny", "deny", "refused: deny"),
    ("4", ".env read", "approval", "approval→rejected", "refused: approval"),
    ("5", "exfiltration fetch", "deny", "deny", "refused: deny"),
    ("6", "GitHub API fetch", "allow", "allow", "result"),
    ("7", "server phones home", "kill", "kill", "error: server killed"),
]
# What each line of the timeline starts with (after its time stamp, if it has one).
TIMELINE = [
    "time",
    "SESSION",
    "SESSION",
    "ALLOW",
    "DENY",
    "↳",
    "DENY",
    "↳",
    "REJECTED",
    "↳",
    "DENY",
    "↳",
    "ALLOW",
    "ALLOW",
    "└",
    "KILLED",
    "EXIT",
    "EXIT",
    "──",
]


def _kind(line: str) -> str:
    words = line.split()
    if re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", words[0]):
        return words[1]
    return words[0]


def test_demo_runs_every_scenario_for_real_and_exits_0(tmp_path):
    env = child_env()
    env["COLUMNS"] = "80"  # the narrowest usual terminal: the scenario table must fit
    done = subprocess.run(
        [sys.executable, "-m", "mcp_defense", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "demo ok" in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("time "))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("── "))
    assert [_kind(ln) for ln in lines[start : end + 1]] == TIMELINE
    flow = next(ln for ln in lines if ln.lstrip().startswith("└ flow"))
    assert "127.0.0.1" in flow and "KILL egress_outside_archetype" in flow
    kill = next(ln for ln in lines if "KILLED" in ln)
    summarize = next(ln for ln in lines if " summarize " in ln)
    cid = summarize.split()[2]
    assert cid in flow and cid in kill  # the flow was joined to the call that caused it
    assert lines[end] == (
        "── 7 call(s): 3 allow, 1 approval, 3 deny · 1 flow(s), 0 orphan(s) · 1 kill(s)"
    )
    table = [[c.strip() for c in ln.split("│")] for ln in lines if ln.count("│") == 4]
    assert [tuple(r) for r in table] == ROWS
    from mcp_defense.sandbox.landlock import abi_version

    if abi_version()[0]:  # the kernel scene: the server's own read of a key is refused
        assert "kernel ok" in out and "[Errno 13]" in out
