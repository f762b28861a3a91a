"""Kernel enforcement with real processes: `mcp-defense stdio --sandbox` in front of a server
that misbehaves on its own, the SDK server and the npm filesystem server. Skipped only where
the kernel has no Landlock."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from support.stdio_helpers import ROOT, SDK_SERVER, TESTS, child_env, read_events
from test_stdio_proxy_sdk import _npx_filesystem_server, params_for

from mcp_defense.protocol.jsonrpc import POLICY_DENIED
from mcp_defense.sandbox.landlock import ABI_CAP_ENV, abi_version

ABI, WHY_NOT = abi_version()
pytestmark = pytest.mark.skipif(ABI == 0, reason=f"no Landlock here: {WHY_NOT}")
PROBE = [sys.executable, str(TESTS / "support" / "sandbox_probe.py")]
EACCES = f"PermissionError:{errno.EACCES}"


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A temp HOME with a key in it, a workspace with a file, a loopback listener."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    ws = tmp_path / "workspace"
    ws.mkdir()
    (ws / "notes.txt").write_text("workspace file\n")
    return {"home": home, "ws": ws, "tmp": tmp_path}


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1], accepted
    srv.close()


def proxy_env(home: Path, **extra: str) -> dict[str, str]:
    env = child_env()
    env["HOME"] = str(home)
    env.update(extra)
    return env


def run_probe(world: dict[str, Path], port: int, archetype: str, *flags: str, **env: str):
    argv = [
        sys.executable, "-m", "mcp_defense.cli.main", "stdio", "--sandbox", *flags,
        "--archetype", archetype, "--set", f"workspace={world['ws']}",
        "--record", str(world["tmp"] / "rec.jsonl"), "--",
        *PROBE, str(world["home"] / ".ssh" / "id_ed25519"), str(port), str(world["ws"] / "notes.txt"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,  # held open: the server finishes on its own
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=proxy_env(world["home"], **env),
        cwd=str(world["ws"]),
    )
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.close()
    err = proc.stderr.read().decode()
    probes = [json.loads(line[6:]) for line in err.splitlines() if line.startswith("PROBE ")]
    return proc.returncode, probes[0] if probes else None, err


def test_filesystem_server_cannot_read_home_connect_or_spawn(world, listener):
    port, accepted = listener
    code, probe, err = run_probe(world, port, "filesystem")
    assert probe == {"jewel": EACCES, "connect": EACCES, "spawn": EACCES, "workspace": "ok"}, err
    assert code == 0 and accepted == []
    assert "mcp-defense: sandbox: Landlock ABI" in err and "enforced:" in err
    start = read_events(world["tmp"] / "rec.jsonl")[0]
    assert start["type"] == "session_start" and start["sandbox"]["mode"] == "on"
    assert start["sandbox"]["landlock_abi"] == ABI
    assert start["sandbox"]["connect_ports"] == [] and start["sandbox"]["spawn"] == "none"


def test_shell_server_may_spawn_but_not_read_home(world, listener):
    port, _ = listener
    _, probe, err = run_probe(world, port, "shell")
    assert probe is not None, err
    assert probe["spawn"] == "ok" and probe["workspace"] == "ok"
    assert probe["jewel"] == EACCES  # `paths any` never covers a home
    if ABI >= 4:
        assert probe["connect"] == EACCES  # network none


@pytest.mark.skipif(ABI < 4, reason=f"Landlock ABI {ABI} has no TCP port rules (needs 4)")
def test_github_server_cannot_connect_to_other_ports(world, listener):
    port, accepted = listener
    assert port != 443
    _, probe, err = run_probe(world, port, "github")
    assert probe is not None, err
    assert probe["connect"] == EACCES and accepted == []
    assert probe["jewel"] == EACCES  # HOME is under /tmp: the /tmp grant is split around it


def test_require_refuses_without_full_enforcement(world, listener):
    port, _ = listener
    code, probe, err = run_probe(world, port, "github", "--sandbox=require", **{ABI_CAP_ENV: "3"})
    assert code == 2 and probe is None
    assert "NOT enforced: network" in err and "--sandbox=require" in err


def test_missing_landlock_is_said_out_loud(world, listener):
    port, accepted = listener
    code, probe, err = run_probe(world, port, "filesystem", **{ABI_CAP_ENV: "0"})
    assert "sandbox: NOT enforced" in err
    assert probe == {"jewel": "ok", "connect": "ok", "spawn": "ok", "workspace": "ok"}
    start = read_events(world["tmp"] / "rec.jsonl")[0]
    assert start["sandbox"]["landlock_abi"] == 0 and start["sandbox"]["enforced"] == []
    code, probe, err = run_probe(
        world, port, "filesystem", "--sandbox=require", **{ABI_CAP_ENV: "0"}
    )
    assert code == 2 and probe is None


def sandboxed(server: list[str], workspace: Path, archetype: str) -> object:
    argv = [
        sys.executable, "-m", "mcp_defense.cli.main", "stdio", "--sandbox",
        "--archetype", archetype, "--set", f"workspace={workspace}", "--", *server,
    ]  # fmt: skip
    return params_for(argv)


def test_sdk_server_works_under_sandbox(tmp_path):
    ws = tmp_path / "workspace"
    ws.mkdir()
    (ws / "main.py").write_text("print('hello from the workspace')\n")
    params = sandboxed([*SDK_SERVER, str(ws)], ws, "filesystem")

    async def scenario() -> None:
        async with Client(params, mode="legacy") as client:  # type: ignore[arg-type]
            ok = await client.call_tool("read_file", {"path": str(ws / "main.py")})
            assert ok.is_error is False and "hello from the workspace" in ok.content[0].text
            wrote = await client.call_tool(
                "write_file", {"path": str(ws / "out.txt"), "content": "x"}
            )
            assert wrote.is_error is False and (ws / "out.txt").read_text() == "x"
            with pytest.raises(MCPError) as denied:
                await client.call_tool("read_file", {"path": "/home/alice/.aws/credentials"})
            assert denied.value.error.code == POLICY_DENIED

    anyio.run(scenario)


@pytest.mark.timeout(240)
def test_npm_filesystem_server_works_under_sandbox(tmp_path):
    ws = tmp_path / "workspace"
    ws.mkdir()
    (ws / "main.py").write_text("print('hello from the workspace')\n")
    server = _npx_filesystem_server(ws)  # installs into the npm cache, outside the sandbox
    if server is None:
        pytest.skip(
            "npx is not installed or @modelcontextprotocol/server-filesystem cannot be fetched"
        )
    params = sandboxed(server, ws, "filesystem")

    async def scenario() -> None:
        async with Client(params, mode="legacy") as client:  # type: ignore[arg-type]
            names = {t.name for t in (await client.list_tools()).tools}
            read_tool = "read_text_file" if "read_text_file" in names else "read_file"
            ok = await client.call_tool(read_tool, {"path": str(ws / "main.py")})
            assert ok.is_error is False and "hello from the workspace" in ok.content[0].text

    anyio.run(scenario)


def test_policy_compile_shows_the_ruleset():
    out = subprocess.run(
        [sys.executable, "-m", "mcp_defense.cli.main", "policy", "compile", "--sandbox",
         "filesystem", "--set", "workspace=/srv/ws", "--format", "json"],
        capture_output=True, text=True, env=child_env(), cwd=str(ROOT), check=True,
    ).stdout  # fmt: skip
    data = json.loads(out)
    rules = {r["path"]: r for r in data["fs"]}
    assert data["archetype"] == "filesystem" and data["connect"] == []
    assert "/root" not in rules and not any(p.startswith("/home") for p in rules)
    assert data["enforcement"]["landlock_abi"] == ABI


def test_no_way_around_through_proc_or_dotdot(world):
    """Paths are checked where they land: /proc magic links and `..` reach nothing new, and
    other processes' /proc entries (the agent's environment) stay closed."""
    import mcp_defense
    from mcp_defense.sandbox.plan import prepare

    jewel = world["home"] / ".ssh" / "id_ed25519"
    rel = os.path.relpath(jewel, world["ws"])
    code = (
        "import sys\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        open(p).read(); print('LEAK', p)\n"
        "    except OSError as e:\n"
        "        print(e.errno)\n"
    )
    targets = [f"/proc/self/root{jewel}", f"/proc/self/cwd/{rel}", str(world["ws"] / rel)]
    targets.append(f"/proc/{os.getppid()}/environ")
    table = mcp_defense.compile(None, {"workspace": str(world["ws"])})
    server = [sys.executable, "-c", code, *targets]
    env = proxy_env(world["home"])
    launch = prepare(table, "filesystem", server, "on", env=env)
    out = subprocess.run(
        [*launch.launcher, *server], capture_output=True, text=True, env=env, cwd=world["ws"]
    ).stdout.split()
    assert out == [str(errno.EACCES)] * len(targets)
