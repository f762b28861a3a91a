"""`mcp-defense wrap` / `unwrap`: put a Claude Code project behind mcp-defense, and take it out.

`wrap` rewrites each stdio server of `.mcp.json` to run behind `mcp-defense stdio` (the real
command after `--`) and installs the PreToolUse hook in `.claude/settings.json`. The files are
the user's, so they are edited as text, not re-serialised: only the spans that change are
touched (the command token, text inserted at the start of `args`, one hook entry), the rest
stays byte for byte, wrapping twice changes nothing, and `unwrap` removes exactly what `wrap`
inserted (the original command token is kept, raw, inside `args`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from mcp_defense.cli.common import usage_error
from mcp_defense.proxy.environment import is_secret_name

AGENT_ID = "claude-code"
HOOK_MARK = "hook claude-code"
# Guesses from the server's name, command and package, most specific first; anything else is
# `generic` (observed while learning, then held to the workspace).
_GUESSES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (arch, re.compile(pattern))
    for arch, pattern in (
        ("filesystem", r"filesystem|\bfs\b|server-files"),
        ("github", r"github|gitlab"),
        ("database", r"postgres|mysql|sqlite|mariadb|mongo|redis|database|\bdb\b|supabase"),
        ("code-execution", r"code-exec|code-run|python-exec|sandbox|jupyter|e2b|interpreter"),
        ("shell", r"shell|terminal|\bbash\b|commands?-runner|desktop-commander"),
        (
            "web-fetch",
            r"fetch|puppeteer|playwright|browser|brave-search|web-search|tavily|firecrawl|scrape",
        ),
    )
)


def guess_archetype(name: str, server: dict[str, Any]) -> str:
    args = server.get("args")
    words = [name, str(server.get("command", ""))]
    if isinstance(args, list):
        words += [a for a in args if isinstance(a, str)]
    haystack = " ".join(words).lower()
    for arch, pattern in _GUESSES:
        if pattern.search(haystack):
            return arch
    return "generic"


# ---------------------------------------------------------------- JSON with byte spans


class JsonSyntaxError(ValueError):
    pass


@dataclass
class Node:
    kind: str  # object | array | string | number | literal
    start: int
    end: int
    value: Any = None
    members: list[tuple[str, Node]] = field(default_factory=list)  # objects, in order
    key_starts: list[int] = field(default_factory=list)  # where each member's key begins
    items: list[Node] = field(default_factory=list)  # arrays

    def get(self, key: str) -> Node | None:
        for k, v in self.members:
            if k == key:
                return v
        return None


_scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]  # the C scanner
_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def parse_spans(text: str) -> Node:
    """Strict JSON (as `json.loads`), with the character span of every value."""
    json.loads(text)  # the authoritative check; the scanner below trusts it

    def ws(i: int) -> int:
        m = _WS.match(text, i)
        return m.end() if m else i

    def value(i: int) -> Node:
        c = text[i]
        if c == "{":
            node = Node("object", i, i)
            i = ws(i + 1)
            if text[i] == "}":
                node.end = i + 1
                return node
            while True:
                node.key_starts.append(i)
                key, i = _scanstring(text, i + 1)
                i = ws(ws(i) + 1)  # past ':'
                v = value(i)
                node.members.append((key, v))
                i = ws(v.end)
                if text[i] == "}":
                    node.end = i + 1
                    return node
                i = ws(i + 1)  # past ','
        if c == "[":
            node = Node("array", i, i)
            i = ws(i + 1)
            if text[i] == "]":
                node.end = i + 1
                return node
            while True:
                v = value(i)
                node.items.append(v)
                i = ws(v.end)
                if text[i] == "]":
                    node.end = i + 1
                    return node
                i = ws(i + 1)
        if c == '"':
            s, end = _scanstring(text, i + 1)
            return Node("string", i, end, s)
        for lit, val in (("true", True), ("false", False), ("null", None)):
            if text.startswith(lit, i):
                return Node("literal", i, i + len(lit), val)
        m = _NUMBER.match(text, i)
        if not m:
            raise JsonSyntaxError(f"unexpected {c!r} at offset {i}")
        return Node("number", i, m.end(), json.loads(m.group()))

    return value(ws(0))


Edit = tuple[int, int, str]  # replace text[start:end] with the string


def apply_edits(text: str, edits: list[Edit]) -> str:
    for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _indent_unit(text: str) -> str:
    m = re.search(r"\n([ \t]+)\S", text)
    return m.group(1) if m else "  "


def _line_indent(text: str, pos: int) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    m = _WS.match(text, line_start)
    indent = text[line_start : m.end() if m else line_start]
    return indent.replace("\n", "").replace("\r", "")


def _render(value: Any, indent: str, unit: str) -> str:
    return json.dumps(value, indent=unit, ensure_ascii=False).replace("\n", "\n" + indent)


def _add_member(text: str, obj: Node, key: str, value: Any) -> Edit:
    """Insert `"key": value` as the last member of `obj`, in the file's indentation style."""
    unit = _indent_unit(text)
    outer = _line_indent(text, obj.start)
    inner = outer + unit
    member = f"{json.dumps(key)}: {_render(value, inner, unit)}"
    if obj.members:
        last = obj.members[-1][1]
        if "\n" not in text[obj.start : obj.end]:  # a one-line object stays on one line
            return (last.end, last.end, f", {json.dumps(key)}: {json.dumps(value)}")
        return (last.end, last.end, f",\n{inner}{member}")
    return (obj.start + 1, obj.end - 1, f"\n{inner}{member}\n{outer}")


def _remove_member(obj: Node, key: str) -> Edit:
    """The inverse of `_add_member` (for any member, with its separating comma)."""
    idx = [k for k, _ in obj.members].index(key)
    if len(obj.members) == 1:
        return (obj.start + 1, obj.end - 1, "")
    if idx > 0:
        return (obj.members[idx - 1][1].end, obj.members[idx][1].end, "")
    return (obj.key_starts[0], obj.key_starts[1], "")


# ---------------------------------------------------------------- .mcp.json


def _is_wrapped(server: Node, mcpd: str) -> bool:
    cmd, args = server.get("command"), server.get("args")
    return bool(
        cmd is not None
        and cmd.value == mcpd
        and args is not None
        and args.kind == "array"
        and args.items
        and args.items[0].value == "stdio"
        and any(i.value == "--" for i in args.items)
    )


def wrap_mcp_config(
    text: str, mcpd: str, archetypes: dict[str, str], notes: list[str]
) -> tuple[str, dict[str, str]]:
    """The wrapped text, and each server's archetype (for the hook's --server-archetype)."""
    root = parse_spans(text)
    servers = root.get("mcpServers") if root.kind == "object" else None
    if servers is None or servers.kind != "object":
        raise JsonSyntaxError('no "mcpServers" object')
    edits: list[Edit] = []
    chosen: dict[str, str] = {}
    for name, server in servers.members:
        if server.kind != "object":
            notes.append(f"{name}: not an object, left alone")
            continue
        plain = json.loads(text[server.start : server.end])
        if _is_wrapped(server, mcpd):
            args = server.get("args")
            assert args is not None
            vals = [i.value for i in args.items]
            arch = vals[vals.index("--archetype") + 1] if "--archetype" in vals else "generic"
            chosen[name] = str(arch)
            continue
        arch = archetypes.get(name) or guess_archetype(name, plain)
        chosen[name] = arch
        cmd = server.get("command")
        if cmd is None or cmd.kind != "string" or plain.get("type") in ("http", "sse"):
            notes.append(f"{name}: not a stdio server, left alone (the hook still decides it)")
            continue
        args = server.get("args")
        if args is not None and args.kind != "array":
            notes.append(f"{name}: args is not an array, left alone")
            continue
        prefix = ["stdio", "--archetype", arch, "--agent-id", AGENT_ID]
        # The credentials the config gives this server on purpose: the proxy would withhold
        # them by default (proxy/environment.py), breaking a server that worked unwrapped.
        env = plain.get("env")
        passed = sorted(k for k in env if is_secret_name(k)) if isinstance(env, dict) else []
        for key in passed:
            prefix += ["--pass-env", key]
        prefix.append("--")
        raw_cmd = text[cmd.start : cmd.end]  # kept raw, so unwrap restores it byte for byte
        inserted = ", ".join(json.dumps(p) for p in prefix) + ", " + raw_cmd
        edits.append((cmd.start, cmd.end, json.dumps(mcpd)))
        if args is None:
            edits.append((cmd.end, cmd.end, f', "args": [{inserted}]'))
        elif args.items:
            edits.append((args.items[0].start, args.items[0].start, inserted + ", "))
        else:
            edits.append((args.start + 1, args.end - 1, inserted))
        notes.append(
            f"{name}: wrapped as {arch}"
            + (f", passing {', '.join(passed)} from its env" if passed else "")
        )
    return apply_edits(text, edits), chosen


def unwrap_mcp_config(text: str, mcpd: str, notes: list[str]) -> str:
    root = parse_spans(text)
    servers = root.get("mcpServers") if root.kind == "object" else None
    if servers is None or servers.kind != "object":
        raise JsonSyntaxError('no "mcpServers" object')
    edits: list[Edit] = []
    for name, server in servers.members:
        if server.kind != "object" or not _is_wrapped(server, mcpd):
            continue
        cmd, args = server.get("command"), server.get("args")
        assert cmd is not None and args is not None
        items = args.items
        dd = [i.value for i in items].index("--")
        if dd + 1 >= len(items) or items[dd + 1].kind != "string":
            notes.append(f"{name}: no server command after --, left alone")
            continue
        real = items[dd + 1]
        edits.append((cmd.start, cmd.end, text[real.start : real.end]))
        if dd + 2 < len(items):
            edits.append((items[0].start, items[dd + 2].start, ""))
        elif text[cmd.end : args.start] == ', "args": ':
            # wrap added the whole `args` member, in exactly this form (the server had none;
            # an original `"command": …, "args": []` written the same way would lose its
            # empty args too, which Claude Code reads the same)
            edits.append((cmd.end, args.end, ""))
        else:
            edits.append((items[0].start, real.end, ""))
        notes.append(f"{name}: unwrapped")
    return apply_edits(text, edits)


# ---------------------------------------------------------------- .claude/settings.json


def hook_command(mcpd: str, server_archetypes: dict[str, str]) -> str:
    import shlex

    parts = [shlex.quote(mcpd), "hook", "claude-code"]
    for name, arch in sorted(server_archetypes.items()):
        parts += ["--server-archetype", shlex.quote(f"{name}={arch}")]
    # `|| exit 2`: if the command cannot even start (not on PATH, broken install), exit 2 —
    # the code that blocks the tool use; any other failure code would let it through.
    return " ".join(parts) + " || exit 2"


def _our_entries(pre: Node) -> list[int]:
    out = []
    for idx, entry in enumerate(pre.items):
        hooks = entry.get("hooks") if entry.kind == "object" else None
        if hooks is not None and hooks.kind == "array":
            for h in hooks.items:
                c = h.get("command") if h.kind == "object" else None
                if c is not None and isinstance(c.value, str) and HOOK_MARK in c.value:
                    out.append(idx)
                    break
    return out


def install_hook(text: str, command: str) -> str:
    entry = {"matcher": "*", "hooks": [{"type": "command", "command": command}]}
    if not text.strip():
        return json.dumps({"hooks": {"PreToolUse": [entry]}}, indent=2) + "\n"
    root = parse_spans(text)
    if root.kind != "object":
        raise JsonSyntaxError("settings is not a JSON object")
    hooks = root.get("hooks")
    if hooks is None:
        return apply_edits(text, [_add_member(text, root, "hooks", {"PreToolUse": [entry]})])
    if hooks.kind != "object":
        raise JsonSyntaxError('"hooks" is not an object')
    pre = hooks.get("PreToolUse")
    if pre is None:
        return apply_edits(text, [_add_member(text, hooks, "PreToolUse", [entry])])
    if pre.kind != "array":
        raise JsonSyntaxError('"hooks.PreToolUse" is not an array')
    ours = _our_entries(pre)
    if ours:  # installed: keep it, with this wrap's command (servers may have been added)
        for h in pre.items[ours[0]].get("hooks").items:  # type: ignore[union-attr]
            c = h.get("command") if h.kind == "object" else None
            if c is not None and isinstance(c.value, str) and HOOK_MARK in c.value:
                if c.value == command:
                    return text
                return apply_edits(text, [(c.start, c.end, json.dumps(command))])
        return text
    unit = _indent_unit(text)
    if pre.items:
        last = pre.items[-1]
        indent = _line_indent(text, last.start)
        if text.rfind("\n", pre.start, last.start) < 0:  # a one-line array stays one line
            return apply_edits(text, [(last.end, last.end, ", " + json.dumps(entry))])
        return apply_edits(
            text, [(last.end, last.end, f",\n{indent}{_render(entry, indent, unit)}")]
        )
    outer = _line_indent(text, pre.start)
    inner = outer + unit
    return apply_edits(
        text, [(pre.start + 1, pre.end - 1, f"\n{inner}{_render(entry, inner, unit)}\n{outer}")]
    )


def uninstall_hook(text: str) -> str:
    """Remove our entry; then `PreToolUse` and `hooks` if that left them empty (as wrap
    creates them when they are missing)."""
    if not text.strip():
        return text
    root = parse_spans(text)
    hooks = root.get("hooks") if root.kind == "object" else None
    pre = hooks.get("PreToolUse") if hooks is not None and hooks.kind == "object" else None
    if pre is None or pre.kind != "array" or not _our_entries(pre):
        return text
    assert hooks is not None
    ours = _our_entries(pre)
    if len(ours) == len(pre.items):
        if len(hooks.members) == 1:
            return apply_edits(text, [_remove_member(root, "hooks")])
        return apply_edits(text, [_remove_member(hooks, "PreToolUse")])
    edits: list[Edit] = []
    for idx in ours:
        node = pre.items[idx]
        if idx > 0:
            edits.append((pre.items[idx - 1].end, node.end, ""))
        else:
            edits.append((node.start, pre.items[1].start, ""))
    return apply_edits(text, edits)


# ---------------------------------------------------------------- files and commands


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _apply(changes: list[tuple[Path, str, str]], dry_run: bool) -> None:
    for path, old, new in changes:
        if old == new:
            continue
        if dry_run:
            sys.stdout.writelines(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    f"{path} (before)",
                    f"{path} (after)",
                )
            )
        else:
            _write_atomic(path, new)


def _paths(config: str, settings: str | None) -> tuple[Path, Path]:
    cfg = Path(config)
    return cfg, Path(settings) if settings else cfg.resolve().parent / ".claude" / "settings.json"


ConfigOpt = Annotated[
    str, typer.Option("--config", "-c", help="Claude Code MCP configuration to rewrite.")
]
SettingsOpt = Annotated[
    str | None,
    typer.Option(
        "--settings",
        help="Claude Code settings for the hook (default: .claude/settings.json "
        "next to the config).",
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show a diff; write nothing.")]
McpdOpt = Annotated[
    str, typer.Option("--mcpd", help="How Claude Code should run mcp-defense (command or path).")
]


def wrap(
    config: ConfigOpt = ".mcp.json",
    settings: SettingsOpt = None,
    archetype: Annotated[
        list[str] | None,
        typer.Option("--archetype", "-a", help="SERVER=ARCH, overriding the guess (repeatable)."),
    ] = None,
    dry_run: DryRunOpt = False,
    no_hook: Annotated[
        bool, typer.Option("--no-hook", help="Only wrap the servers; leave settings alone.")
    ] = False,
    mcpd: McpdOpt = "mcp-defense",
) -> None:
    """Put each stdio server of a Claude Code MCP config behind `mcp-defense stdio`, and
    install the PreToolUse hook (all tools) in .claude/settings.json. Idempotent.

    Exit codes: 0 written (or, with --dry-run, shown), 2 unreadable or invalid config, or
    usage error.
    """
    overrides: dict[str, str] = {}
    for item in archetype or ():
        name, sep, arch = item.partition("=")
        if not sep or not name or not arch:
            raise usage_error(f"--archetype expects SERVER=ARCH, got {item!r}")
        overrides[name] = arch
    cfg, st = _paths(config, settings)
    old = _read(cfg)
    if not old:
        raise usage_error(f"{cfg}: no such file (or empty)")
    notes: list[str] = []
    try:
        new, chosen = wrap_mcp_config(old, mcpd, overrides, notes)
        changes = [(cfg, old, new)]
        if not no_hook:
            old_st = _read(st)
            changes.append((st, old_st, install_hook(old_st, hook_command(mcpd, chosen))))
    except (ValueError, IndexError) as e:
        raise usage_error(f"cannot edit: {e}") from e
    unknown = sorted(set(overrides) - set(chosen))
    if unknown:
        raise usage_error(f"--archetype for unknown server(s): {', '.join(unknown)}")
    for n in notes:
        print(f"mcp-defense wrap: {n}", file=sys.stderr)
    _apply(changes, dry_run)


def unwrap(
    config: ConfigOpt = ".mcp.json",
    settings: SettingsOpt = None,
    dry_run: DryRunOpt = False,
    mcpd: McpdOpt = "mcp-defense",
) -> None:
    """Reverse `wrap`: restore each server's own command and remove the hook.

    Exit codes: 0 restored (or nothing to undo), 2 unreadable or invalid config, or usage error.
    """
    cfg, st = _paths(config, settings)
    old = _read(cfg)
    notes: list[str] = []
    try:
        changes = [(cfg, old, unwrap_mcp_config(old, mcpd, notes) if old else old)]
        old_st = _read(st)
        new_st = uninstall_hook(old_st)
    except (ValueError, IndexError) as e:
        raise usage_error(f"cannot edit: {e}") from e
    for n in notes:
        print(f"mcp-defense unwrap: {n}", file=sys.stderr)
    created = new_st != old_st and old_st == install_hook("", _hook_in(old_st))
    _apply(changes + ([] if created else [(st, old_st, new_st)]), dry_run)
    if created:  # wrap wrote this file from nothing: remove it (and .claude/ if left empty)
        if dry_run:
            print(f"would remove {st}")
        else:
            st.unlink()
            try:
                st.parent.rmdir()
            except OSError:
                pass


def _hook_in(text: str) -> str:
    """Our hook command as installed in `text` (settings parsed by uninstall_hook already)."""
    for entry in json.loads(text)["hooks"]["PreToolUse"]:
        for h in entry.get("hooks", []):
            if HOOK_MARK in h.get("command", ""):
                return str(h["command"])
    return ""


def register(app: typer.Typer) -> None:
    ctx = {"help_option_names": ["-h", "--help"]}
    app.command("wrap", context_settings=ctx)(wrap)
    app.command("unwrap", context_settings=ctx)(unwrap)
