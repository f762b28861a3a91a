"""The archetype → Landlock ruleset compiler and the ctypes binding, piece by piece (the
real-process behaviour is in test_sandbox.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mcp_defense
from mcp_defense.sandbox import landlock
from mcp_defense.sandbox.plan import (
    compile_plan,
    describe,
    elf_interpreter,
    enforcement,
    executable_chain,
    glob_root,
    render,
)

ABI, WHY_NOT = landlock.abi_version()
needs_landlock = pytest.mark.skipif(ABI == 0, reason=f"no Landlock here: {WHY_NOT}")


@pytest.fixture(scope="module")
def table():
    return mcp_defense.compile(None, {"workspace": "/srv/ws"})


def env_with_home(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home)}


def test_glob_roots():
    assert glob_root("/srv/ws/**", "/h") == "/srv/ws"
    assert glob_root("/tmp/**", "/h") == "/tmp"
    assert glob_root("/a/*/b/**", "/h") == "/a"
    assert glob_root("~/.cache/x/**", "/home/u") == "/home/u/.cache/x"
    assert glob_root("**/*.py", "/h") == "/"
    assert glob_root("/etc/hosts", "/h") == "/etc/hosts"


def test_filesystem_archetype(table, tmp_path):
    plan = compile_plan(table, "filesystem", [sys.executable], env=env_with_home(tmp_path))
    rules = {r.path: r for r in plan.fs}
    assert set(rules["/srv/ws"].access) == {"read", "write"}
    assert rules["/usr"].access == ("read",)  # spawn none: no execute on system dirs
    assert plan.connect == () and plan.spawn == "none"
    assert os.path.realpath(sys.executable) in plan.chain
    assert all("execute" not in r.access or r.path in plan.chain for r in plan.fs)
    # No home, no /proc or /etc wholesale: only named files there.
    assert not any(p in rules for p in ("/root", "/home", str(tmp_path), "/proc", "/etc"))
    assert plan.to_json()["self_proc"] is True


def test_any_paths_are_split_around_homes_and_secrets(table, tmp_path):
    plan = compile_plan(table, "shell", ["/bin/sh"], env=env_with_home(tmp_path / "home"))
    root = next(r for r in plan.fs if r.path == "/")
    assert "execute" in root.access  # spawn any
    for excluded in ("/root", "/proc", "/etc/ssh", "/etc/shadow", str(tmp_path / "home")):
        assert excluded in root.excluded
    assert plan.spawn == "any" and plan.chain == ()
    writes = {r.path for r in plan.fs if "write" in r.access}
    assert {"/srv/ws", "/tmp"} <= writes and "/" not in writes


def test_network_ports(table, tmp_path):
    env = env_with_home(tmp_path)
    assert compile_plan(table, "github", [], env=env).connect == (443,)
    assert compile_plan(table, "web-fetch", [], env=env).connect is None
    db = mcp_defense.compile(None, {"workspace": "/w", "db_endpoints": "db.internal"})
    plan = compile_plan(db, "database", [], env=env)
    assert plan.connect is None and any("names no port" in n for n in plan.notes)


def test_runtime_field_grants_read(tmp_path):
    pol = tmp_path / "a.mcpd"
    pol.write_text(
        'archetype tool {\n  paths "${workspace}/**"\n  network none\n  spawn none\n'
        '  runtime "~/.cache/tool/**"\n}\n'
    )
    t = mcp_defense.compile([pol], {"workspace": str(tmp_path / "ws")})
    home = tmp_path / "home"
    plan = compile_plan(t, "tool", [], env=env_with_home(home))
    rule = next(r for r in plan.fs if r.path == str(home / ".cache/tool"))
    assert rule.access == ("read",) and rule.why == "archetype runtime"


def test_executable_chain_follows_shebang_and_loader(tmp_path):
    script = tmp_path / "srv"
    script.write_text("#!/usr/bin/env python3\n")
    script.chmod(0o755)
    files, names = executable_chain([str(script)], dict(os.environ), str(tmp_path))
    assert str(script) in files and "/usr/bin/env" in files
    assert any(n.startswith("python") for n in names)
    loader = elf_interpreter(os.path.realpath("/usr/bin/env"))
    assert loader and os.path.realpath(loader) in files
    assert elf_interpreter(str(script)) is None


def test_enforcement_by_abi(table, tmp_path):
    plan = compile_plan(table, "github", [], env=env_with_home(tmp_path))
    full = enforcement(plan, 7)
    assert full.full and not full.not_enforced
    old = enforcement(plan, 3)
    assert not old.full and any(p.startswith("network") for p in old.not_enforced)
    none = enforcement(plan, 0, "no Landlock")
    assert not none.full and none.enforced == () and "NOT enforced — no Landlock" in none.lines()[0]
    assert "443" in render(plan, full)


def test_describe_json(table):
    import json

    data = json.loads(describe(table, "filesystem", "json"))
    assert data["archetype"] == "filesystem" and data["spawn"] == "none"


def test_access_words():
    assert landlock.access_bits(["read"]) == landlock.FS_READ_FILE | landlock.FS_READ_DIR
    assert landlock.access_bits(["mkdir"]) & landlock.FS_WRITE_FILE == 0
    assert landlock.handled_fs(1) == (1 << 13) - 1 and landlock.handled_fs(7) == (1 << 16) - 1
    assert landlock.parts(4)["network"] and not landlock.parts(4)["scope"]


@needs_landlock
def test_apply_in_a_child_process(tmp_path):
    """The binding alone: a child restricts itself, then is refused outside its grant."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "f").write_text("yes")
    (tmp_path / "out").write_text("no")
    code = f"""
import sys
sys.path.insert(0, {str(Path(landlock.__file__).parent)!r})
import landlock as L
abi, _ = L.abi_version()
L.apply({{"fs": [{{"path": "/", "access": ["read"], "except": [{str(tmp_path / "out")!r}]}}],
         "connect": [], "scope": True}}, abi)
print(open({str(tmp_path / "in" / "f")!r}).read())
try:
    open({str(tmp_path / "out")!r})
except PermissionError:
    print("refused")
try:
    open({str(tmp_path / "in" / "g")!r}, "w")
except PermissionError:
    print("no write")
"""
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["yes", "refused", "no", "write"]


@needs_landlock
def test_trampoline_fails_closed_on_a_bad_ruleset(tmp_path):
    exe = Path(landlock.__file__).with_name("exec.py")
    bad = '{"fs": [{"path": "/", "access": ["read"]}], "connect": [70000]}'
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(exe), bad, "--", "/bin/echo", "started"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 126 and "started" not in done.stdout
    assert "cannot apply the Landlock ruleset" in done.stderr


def test_bare_sandbox_flag_is_read_before_the_separator_only(monkeypatch):
    """Only the proxy's own `--sandbox` becomes `--sandbox=on`; the server's stays as written."""
    import typer.core

    from mcp_defense.cli.stdio import _StdioCommand

    seen: list[list[str]] = []
    monkeypatch.setattr(
        typer.core.TyperCommand, "parse_args", lambda self, ctx, args: seen.append(args) or args
    )
    _StdioCommand("stdio").parse_args(None, ["--sandbox", "-a", "x", "--", "srv", "--sandbox"])
    assert seen == [["--sandbox=on", "-a", "x", "--", "srv", "--sandbox"]]


def test_policy_compile_sandbox_unknown_archetype_is_a_usage_error():
    from typer.testing import CliRunner

    from mcp_defense.cli.main import app

    r = CliRunner().invoke(app, ["policy", "compile", "--sandbox", "nope"])
    assert r.exit_code == 2 and "unknown archetype" in r.output


def test_spawn_list_grants_execute_on_the_named_programs(tmp_path):
    pol = tmp_path / "a.mcpd"
    pol.write_text(
        'archetype lister {\n  paths "${workspace}/**"\n  network none\n  spawn "ls"\n}\n'
    )
    t = mcp_defense.compile([pol], {"workspace": str(tmp_path / "ws")})
    plan = compile_plan(t, "lister", ["/bin/true"], env=env_with_home(tmp_path / "home"))
    assert plan.spawn == "list"
    ls = os.path.realpath(shutil.which("ls") or "/bin/ls")
    assert any(r.path == ls and "execute" in r.access for r in plan.fs)
    assert not any(r.path == "/usr" and "execute" in r.access for r in plan.fs)
