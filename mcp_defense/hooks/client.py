"""The hook process: `mcp-defense hook claude-code …` from argv to exit code.

It runs once per tool use, so `cli/entry.py` calls `fast_main` before typer is imported; it
parses its own few flags, imports only json and socket (not even `typing`), and asks the
resident decision process (`daemon.py`). Any failure, including a bad flag, exits 2 — for
Claude Code, every other non-zero code lets the call through.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs every hook ~7 ms
if TYPE_CHECKING:
    from collections.abc import Sequence

USAGE = (
    "usage: mcp-defense hook claude-code [--policy PATH]... [--set NAME=VALUE]... "
    "[--server-archetype SERVER=ARCH]... [--tool-archetype TOOL=ARCH]... [--record FILE] "
    "[--agent-id ID] [--in-process] [--idle-timeout SECONDS]"
)
_VALUE_FLAGS = {
    "--policy": "policy",
    "-p": "policy",
    "--set": "sets",
    "-s": "sets",
    "--server-archetype": "server_archetypes",
    "--tool-archetype": "tool_archetypes",
    "--record": "record",
    "--agent-id": "agent_id",
    "--idle-timeout": "idle",
}


class UsageError(Exception):
    pass


def _pair(flag: str, item: str) -> list[str]:
    name, sep, value = item.partition("=")
    if not sep or not name or not value:
        raise UsageError(f"{flag} expects NAME=VALUE, got {item!r}")
    return [name, value]


def parse_args(argv: Sequence[str]) -> tuple[dict[str, object], bool, float]:
    """The hook's flags → (config as JSON, in-process?, idle timeout)."""
    multi: dict[str, list[str]] = {"policy": [], "sets": [], "server_archetypes": []}
    multi["tool_archetypes"] = []
    single = {"record": "", "agent_id": "claude-code", "idle": "900"}
    in_process = False
    args = list(argv)
    while args:
        arg = args.pop(0)
        flag, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if flag == "--in-process" and not eq:
            in_process = True
            continue
        key = _VALUE_FLAGS.get(flag)
        if key is None:
            raise UsageError(f"unknown argument {arg!r}")
        if eq:
            value = inline
        elif args:
            value = args.pop(0)
        else:
            raise UsageError(f"{flag} needs a value")
        if key in multi:
            multi[key].append(value)
        else:
            single[key] = value
    sets = [_pair("--set", s) for s in multi["sets"]]
    for name, _ in sets:
        if not name.isidentifier():
            raise UsageError(f"--set: {name!r} is not a valid variable name")
    try:
        idle = float(single["idle"])
    except ValueError:
        raise UsageError(f"--idle-timeout expects seconds, got {single['idle']!r}") from None
    policy = multi["policy"]
    if policy:  # absolute: the resident process does not run in the hook's directory
        from mcp_defense.resources import BUILTIN_PREFIX

        policy = [p if p.startswith(BUILTIN_PREFIX) else os.path.abspath(p) for p in policy]
    config: dict[str, object] = {
        "policy": policy,
        "sets": sets,
        "server_archetypes": [_pair("--server-archetype", s) for s in multi["server_archetypes"]],
        "tool_archetypes": [_pair("--tool-archetype", s) for s in multi["tool_archetypes"]],
        "record": os.path.abspath(single["record"]) if single["record"] else "",
        "agent_id": single["agent_id"],
    }
    return config, in_process, idle


def _block(reason: str) -> int:
    sys.stderr.write(f"mcp-defense: {reason}\n")
    sys.stderr.flush()
    return 2


def fast_main(argv: Sequence[str]) -> int:
    """`hook claude-code …` without typer. Returns the exit code (0 or 2, nothing else)."""
    try:
        if not argv or argv[0] != "claude-code":
            return _block(f"unknown hook {argv[0] if argv else ''!r}; {USAGE}")
        config, in_process, idle = parse_args(argv[1:])
        raw = sys.stdin.buffer.read()
        answer = _decide(config, raw, in_process, idle)
        out, err = str(answer["stdout"]), str(answer["stderr"])
        if out:
            sys.stdout.write(out)
            sys.stdout.flush()
        if err:
            sys.stderr.write(err)
            sys.stderr.flush()
        return 2 if answer["exit"] != 0 else 0
    except UsageError as e:
        return _block(f"{e}\n{USAGE}")
    except BaseException as e:  # noqa: BLE001 - fail closed: 2 is the only blocking failure code
        return _block(f"hook failed, tool use blocked: {type(e).__name__}: {e}")


def _decide(
    config: dict[str, object], raw: bytes, in_process: bool, idle: float
) -> dict[str, object]:
    from mcp_defense.hooks import daemon

    if not in_process:
        try:
            path = daemon.socket_path(daemon.runtime_dir())
        except daemon.Unsafe as e:
            sys.stderr.write(f"mcp-defense: deciding in-process ({e})\n")
        else:
            try:
                answer: dict[str, object] = daemon.ask(path, config, raw, idle)
            except (OSError, ValueError) as e:
                return {
                    "exit": 2,
                    "stdout": "",
                    "stderr": f"mcp-defense: no answer from the decision process, tool use "
                    f"blocked: {type(e).__name__}: {e}\n",
                }
            return answer
    from mcp_defense.hooks.claude_code import HookConfig, TableSource, decide_input

    return decide_input(raw, HookConfig.from_json(config), TableSource()).to_json()
