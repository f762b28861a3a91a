"""The exec trampoline: `python -I -S exec.py PLAN-JSON -- SERVER ARGV...`.

Applies the Landlock plan to itself, sets no_new_privs, then execs the server in place (same
pid, same process group), so the ruleset holds for the server and everything it starts.
A separate process instead of `preexec_fn` because the proxy has threads, and forking a
threaded Python to run Python code before exec is unsafe. Fails closed: if the kernel has
Landlock and the ruleset cannot be applied, the server is not started (exit 126).

Run by path in a bare interpreter (no site, no package import) to cost ~10 ms; it loads
landlock.py next to it by path for the same reason.
"""

from __future__ import annotations

import json
import os
import sys
from types import ModuleType

EXIT_CANNOT_SANDBOX = 126
EXIT_NOT_FOUND = 127


def _landlock() -> ModuleType:
    if __package__:
        from mcp_defense.sandbox import landlock

        return landlock
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("_mcpd_landlock", f"{here}/landlock.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # registered before running, as the import system does
    spec.loader.exec_module(mod)
    return mod


def _say(msg: str) -> None:
    os.write(2, f"mcp-defense sandbox: {msg}\n".encode())


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        _say("usage: exec.py PLAN-JSON -- COMMAND [ARGS...]")
        return 2
    plan = json.loads(argv[1])
    command = argv[3:]
    landlock = _landlock()
    abi, why_not = landlock.abi_version()
    if abi:
        try:
            landlock.apply(plan, abi)
        except OSError as e:
            _say(f"cannot apply the Landlock ruleset ({e}); the server is not started")
            return EXIT_CANNOT_SANDBOX
    elif plan.get("require"):
        _say(f"refusing to start without Landlock: {why_not}")
        return EXIT_CANNOT_SANDBOX
    os.environ.update(plan.get("env") or {})
    try:
        os.execvp(command[0], command)
    except PermissionError as e:
        _say(f"cannot execute {command[0]!r}: {e.strerror} (outside the sandbox's exec rights?)")
        return EXIT_CANNOT_SANDBOX
    except OSError as e:
        _say(f"cannot execute {command[0]!r}: {e.strerror}")
        return EXIT_NOT_FOUND
    return EXIT_NOT_FOUND  # pragma: no cover - execvp returns only by raising


if __name__ == "__main__":
    sys.exit(main(sys.argv))
