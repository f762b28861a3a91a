"""`mcp-defense wrap` / `unwrap` on real Claude Code files: only the changed spans move, wrapping
twice changes nothing, unwrapping restores every byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_defense.cli.wrap import (
    guess_archetype,
    hook_command,
    install_hook,
    uninstall_hook,
    unwrap_mcp_config,
    wrap_mcp_config,
)

DATA = Path(__file__).parent / "data" / "claude_code"
CONFIGS = sorted(p.name for p in DATA.glob("*.mcp.json"))
SETTINGS = sorted(p.name for p in DATA.glob("settings_*.json"))
MCPD = "mcp-defense"


def cli(*args: str, cwd: Path):
    return subprocess.run(
        [sys.executable, "-m", "mcp_defense", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", CONFIGS)
def test_wrap_config(name, snapshot):
    original = (DATA / name).read_text()
    wrapped, archetypes = wrap_mcp_config(original, MCPD, {}, [])
    assert wrapped == snapshot
    assert archetypes == snapshot(name="archetypes")
    assert wrap_mcp_config(wrapped, MCPD, {}, [])[0] == wrapped  # idempotent
    assert unwrap_mcp_config(wrapped, MCPD, []) == original  # exact
    before = json.loads(original)["mcpServers"]
    after = json.loads(wrapped)["mcpServers"]
    for server, conf in before.items():
        if "command" not in conf or conf.get("type") in ("http", "sse"):
            assert after[server] == conf
            continue
        new = after[server]
        assert new["command"] == MCPD
        args = new["args"]
        assert args[:3] == ["stdio", "--archetype", archetypes[server]]
        assert args[args.index("--") + 1 :] == [conf["command"], *conf.get("args", [])]
        assert {k: v for k, v in new.items() if k not in ("command", "args")} == {
            k: v for k, v in conf.items() if k not in ("command", "args")
        }


@pytest.mark.parametrize("name", SETTINGS)
def test_install_hook(name, snapshot):
    original = (DATA / name).read_text()
    command = hook_command(MCPD, {"github": "github"})
    installed = install_hook(original, command)
    assert installed == snapshot
    assert install_hook(installed, command) == installed
    assert uninstall_hook(installed) == original
    entries = json.loads(installed)["hooks"]["PreToolUse"]
    assert entries[-1] == {"matcher": "*", "hooks": [{"type": "command", "command": command}]}
    # a later wrap with more servers updates our command in place
    newer = install_hook(installed, hook_command(MCPD, {"github": "github", "db": "database"}))
    assert "db=database" in newer and uninstall_hook(newer) == original


def test_guesses():
    assert guess_archetype("x", {"command": "npx", "args": ["@scope/mcp-server-sqlite"]}) == (
        "database"
    )
    assert guess_archetype("browser", {"command": "npx", "args": ["@playwright/mcp"]}) == (
        "web-fetch"
    )
    assert guess_archetype("tools", {"command": "/usr/bin/tools"}) == "generic"


def test_credentials_the_config_gives_a_server_are_passed():
    """The proxy withholds credentials from a server by default; one the config hands the
    server on purpose is passed by name, the rest of its env passes anyway."""
    text = json.dumps(
        {
            "mcpServers": {
                "search": {
                    "command": "npx",
                    "args": ["-y", "@brave/brave-search-mcp-server"],
                    "env": {"BRAVE_API_KEY": "x", "LOG_LEVEL": "debug"},
                }
            }
        },
        indent=2,
    )
    notes: list[str] = []
    wrapped, _ = wrap_mcp_config(text, MCPD, {}, notes)
    args = json.loads(wrapped)["mcpServers"]["search"]["args"]
    assert args[: args.index("--")] == [
        "stdio", "--archetype", "web-fetch", "--agent-id", "claude-code",
        "--pass-env", "BRAVE_API_KEY",
    ]  # fmt: skip
    assert notes == ["search: wrapped as web-fetch, passing BRAVE_API_KEY from its env"]
    assert unwrap_mcp_config(wrapped, MCPD, []) == text


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".mcp.json").write_bytes((DATA / "mixed.mcp.json").read_bytes())
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / "settings.json").write_bytes(
        (DATA / "settings_with_hooks.json").read_bytes()
    )
    return tmp_path


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_cli_round_trip(project):
    before = _files(project)
    dry = cli("wrap", "--dry-run", "--archetype", "notes=shell", cwd=project)
    assert dry.returncode == 0, dry.stderr
    assert _files(project) == before
    assert '+\t\t\t"command": "mcp-defense",' in dry.stdout
    assert "--server-archetype notes=shell" in dry.stdout

    assert cli("wrap", "--archetype", "notes=shell", cwd=project).returncode == 0
    wrapped = _files(project)
    assert wrapped != before
    assert json.loads(wrapped[".mcp.json"])["mcpServers"]["notes"]["args"][:3] == [
        "stdio",
        "--archetype",
        "shell",
    ]
    assert cli("wrap", cwd=project).returncode == 0
    assert _files(project) == wrapped  # twice = once

    assert cli("unwrap", "--dry-run", cwd=project).returncode == 0
    assert _files(project) == wrapped
    assert cli("unwrap", cwd=project).returncode == 0
    assert _files(project) == before


def test_cli_creates_and_removes_settings(tmp_path):
    (tmp_path / ".mcp.json").write_bytes((DATA / "quickstart.mcp.json").read_bytes())
    before = _files(tmp_path)
    assert cli("wrap", cwd=tmp_path).returncode == 0
    assert (tmp_path / ".claude" / "settings.json").exists()
    assert cli("unwrap", cwd=tmp_path).returncode == 0
    assert _files(tmp_path) == before
    assert not (tmp_path / ".claude").exists()


def test_cli_usage_errors(project):
    before = _files(project)
    bad = cli("wrap", "--archetype", "nosuch=shell", cwd=project)
    assert bad.returncode == 2 and "nosuch" in bad.stderr
    (project / "broken.json").write_text('{"mcpServers": {')
    broken = cli("wrap", "--config", "broken.json", cwd=project)
    assert broken.returncode == 2 and "cannot edit" in broken.stderr
    assert cli("wrap", "--config", "missing.json", cwd=project).returncode == 2
    assert {k: v for k, v in _files(project).items() if k != "broken.json"} == before


def _hook_entry_command(settings: Path) -> str:
    return json.loads(settings.read_text())["hooks"]["PreToolUse"][-1]["hooks"][0]["command"]


def test_installed_hook_command_runs_and_fails_closed(project, tmp_path):
    mcpd = shutil.which("mcp-defense", path=str(Path(sys.executable).parent))
    if mcpd is None:
        pytest.skip("the mcp-defense script is not installed next to this interpreter")
    assert cli("wrap", "--mcpd", mcpd, cwd=project).returncode == 0
    command = _hook_entry_command(project / ".claude" / "settings.json")
    payload = {
        "session_id": "s",
        "cwd": str(project),
        "hook_event_name": "PreToolUse",
        "tool_name": "mcp__github__get_file_contents",
        "tool_input": {"path": os.path.expanduser("~/.ssh/id_rsa")},
        "tool_use_id": "toolu_9",
    }
    env = dict(os.environ, MCPD_RUNTIME_DIR=str(tmp_path / "rt"))
    # Claude Code runs the hook command through the shell, in the project directory.
    proc = subprocess.run(
        ["sh", "-c", command],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=project,
        env=dict(env, PATH="/usr/bin:/bin"),
        timeout=60,
    )
    try:
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)["hookSpecificOutput"]
        assert out["permissionDecision"] == "deny"
    finally:
        lock = next((tmp_path / "rt").glob("*.lock"), None)
        if lock is not None and lock.read_text().strip().isdigit():
            os.kill(int(lock.read_text()), 15)
    # The command cannot start: `|| exit 2` turns "not found" (127) into a block.
    gone = command.replace(mcpd, "/nonexistent/mcp-defense", 1)
    proc = subprocess.run(["sh", "-c", gone], input="{}", capture_output=True, text=True)
    assert proc.returncode == 2
