"""A policy whose every version decides a marker call differently (hot-reload tests, bench).

Version k denies `echo {"text": "m<k>"}` by rule `marker_<k>` and allows every other call, so a
decision plus the `policy_version` it names says whether the right table made it. BROKEN holds
policies that must never come into force (syntax, CEL, name and import errors).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from mcp_defense.policy.loader import load

ARCHETYPE = "ws"

MAIN = """import "markers.mcpd"

archetype ws {
  paths any
  network any
  spawn any
}

default allow "no rule matched"
"""


def markers(k: int, extra: str = "") -> str:
    return (
        f"rule marker_{k} {{\n"
        f'  when call.tool == "echo" && call.args.text == "m{k}"\n'
        f'  deny "marker {k}"\n'
        "}\n" + extra
    )


# Each is a markers.mcpd that does not compile; the comment says why.
BROKEN = [
    "rule marker_x {\n  when call.tool ==\n",  # unterminated block: syntax error
    'rule marker_x {\n  when call.nope == "x"\n  deny "unknown fact"\n}\n',  # CEL: no such field
    'import "gone.mcpd"\n',  # import of a file that does not exist
    'rule marker_x {\n  when call.tool == "a"\n  deny "a"\n}\n'
    'rule marker_x {\n  when call.tool == "b"\n  deny "b"\n}\n',  # duplicate rule
    'rule marker_x priority x {\n  when true\n  deny "x"\n}\n',  # priority is not a number
]


def write_policy(directory: Path, k: int | None) -> tuple[Path, Path]:
    """Create main.mcpd + markers.mcpd (version k; None = no marker rule)."""
    directory.mkdir(parents=True, exist_ok=True)
    main = directory / "main.mcpd"
    main.write_text(MAIN)
    (directory / "markers.mcpd").write_text(markers(k) if k is not None else "")
    return main, directory / "markers.mcpd"


def save_atomic(path: Path, text: str) -> None:
    """What editors do: write a temporary file beside the target, then rename it over."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_in_place(path: Path, text: str) -> None:
    """Truncate and write (a watcher may see the empty file in between)."""
    with open(path, "w") as fh:
        fh.write(text)


def version_of(main: Path, variables: dict[str, str] | None = None) -> str:
    """The content hash the engine would give the policy rooted at `main` right now."""
    result = load([main], variables or {})
    assert result.table is not None, [d.short() for d in result.errors]
    return result.table.version


def wait_until(pred: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    """Poll (generous timeout; tests never assert wall-clock times)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        time.sleep(0.005)
