"""`mcp-defense stdio`: a policy-enforcing proxy between an MCP client and a stdio server.

Why threads and raw file descriptors instead of asyncio: the proxy sits on every round trip
of the agent, and the per-message cost of an event loop (futures, stream readers, callbacks)
is several times the cost of the work itself. Here each direction is one thread doing
blocking `os.read` of large chunks and `os.write` of whole lines, so a forwarded message
costs a syscall pair plus the checks. The main thread only waits for the server and forwards
signals (Python runs signal handlers there).

Invariants (see README "Protect an MCP server" for the user-facing contract):

* Every client→server line is parsed and classified before the server sees any of it; what
  is forwarded is the exact bytes received (no re-serialisation, no parser differential).
* A `tools/call` reaches the server only if the table allows it (or `--observe`); anything
  unparseable, over-size, or otherwise invalid is never forwarded.
* A batch is forwarded only if every element is valid and allowed; otherwise no element is
  and every element with an id is answered with an error.
* Server→client bytes are forwarded as-is, in order; only ids are sniffed (cheaply) to
  close pending requests, and lines over the ceiling are replaced by an error.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from mcp_defense.correlate.kill import kill_server as kill_tree
from mcp_defense.events.model import KillEvent, ServerExit, SessionStart
from mcp_defense.events.record import Recorder, printable
from mcp_defense.policy.table import LearningState
from mcp_defense.protocol.jsonrpc import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_MESSAGE_BYTES,
    LineFramer,
    Oversize,
    encode,
    parse_message,
)
from mcp_defense.proxy.approval import Approver
from mcp_defense.proxy.elicit import (
    ELICIT_PREFIX,
    can_elicit,
    elicitation_request,
    is_answer,
    verdict,
)
from mcp_defense.proxy.pins import PinStore
from mcp_defense.proxy.session import (
    AskApproval,
    Kill,
    ProxyAction,
    ProxySession,
    TableLike,
    ToClient,
    ToServer,
)
from mcp_defense.proxy.spawn import spawn_server

# Reads of 256 KiB or more cost ~20 µs each here (malloc turns them into mmap/munmap), so
# small messages are read 64 KiB at a time and only a line already that long gets 1 MiB reads.
READ_SMALL = 1 << 16
READ_LARGE = 1 << 20
PIPE_SIZE = 1 << 20  # ask the kernel for 1 MiB pipes: 16x fewer syscalls on large messages
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# SIGHUP is not forwarded: it is the policy-reload signal (policy/reload.py).
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_ELICIT_ID = ELICIT_PREFIX.encode()
EXIT_SPAWN_FAILED = 127
EXIT_KILLED_BY_POLICY = 1
# How long the main thread, woken by the server's death, waits for a kill in progress to
# finish (the kill path verifies the whole tree is dead) so its event precedes server_exit.
KILL_SETTLE_S = 5.0
# After EOF on the server's stdout, how long to wait for the server to exit before treating
# it as a server that closed its output but keeps running (and stopping it).
OUTPUT_CLOSED_SETTLE_S = 0.5


class FlowHooks(Protocol):
    """What the proxy tells a flow correlator (`proxy.flows.FlowMonitor`): the server's
    life and each forwarded call's, so flows can be joined to the calls that caused them."""

    def server_started(self, pid: int, session_id: str) -> None: ...

    def call_opened(self, correlation_id: str) -> None: ...

    def call_closed(self, correlation_id: str) -> None: ...

    def server_exited(self, pid: int) -> str: ...  # the rule of a flow kill, or ""

    def close(self) -> None: ...


def _set_pipe_size(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # not a pipe, or above /proc/sys/fs/pipe-max-size: the default works, slower


def _tune_malloc() -> None:
    """Make glibc serve every block of 256 KiB or more with mmap, and return it on free.

    By default glibc raises that threshold after the first large free, so the buffers of one
    16 MiB message stay in the heap afterwards and the next large message adds to them: the
    proxy's RSS would track the sum of recent large messages, not the one in flight.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD (fixing it also disables the dynamic bump)
    except (OSError, AttributeError):
        pass  # not glibc (musl, macOS): nothing to tune


def _write_all(fd: int, data: bytes) -> None:
    """Write everything, also to a descriptor a parent left non-blocking (Node does that to
    its ends of pipes and sockets; changing the shared flag could break the parent)."""
    try:
        n = os.write(fd, data)
    except BlockingIOError:
        n = 0
    if n == len(data):
        return
    view = memoryview(data)[n:]
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


class StdioProxy:
    """One proxied server. `get_table` is called once per decision, so a hot reload that
    swaps the table takes effect at the next call, and a call in flight finishes under the
    table it started with."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        archetype: str,
        get_table: Callable[[], TableLike],
        agent_id: str = "unknown",
        observe: bool = False,
        approver: Approver | None = None,
        recorder: Recorder | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        session_id: str | None = None,
        stdin_fd: int = 0,
        stdout_fd: int = 1,
        shutdown_grace_s: float = 2.0,
        term_grace_s: float = 2.0,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        learning: LearningState | None = None,
        flows: FlowHooks | None = None,
        launcher: Sequence[str] = (),
        sandbox: dict[str, Any] | None = None,
        pins: PinStore | None = None,
        env_withheld: Sequence[str] = (),
        env_credentials: Sequence[str] = (),
    ) -> None:
        if not command:
            raise ValueError("no server command given")
        self.command = list(command)
        self.archetype = archetype
        self.get_table = get_table
        self.agent_id = agent_id
        self.observe = observe
        self.approver = approver
        self._elicits: dict[str, tuple[threading.Event, list[tuple[bool, str]]]] = {}
        self.recorder = recorder or Recorder()
        self.max_message_bytes = max_message_bytes
        self.max_depth = max_depth
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.shutdown_grace_s = shutdown_grace_s
        self.term_grace_s = term_grace_s
        self.env = env
        # What the server did not inherit, and the credentials it did (names, session_start).
        self.env_withheld = list(env_withheld)
        self.env_credentials = list(env_credentials)
        self.cwd = cwd
        self.learning = learning  # archetype learning periods; None = always enforce
        self.flows = flows  # flow correlation (--flow-source); None = calls only
        # --sandbox: argv that applies a Landlock ruleset and execs the server in place
        # (same pid), and what the kernel enforces, for session_start.
        self.launcher = list(launcher)
        self.sandbox = sandbox

        self._proc: subprocess.Popen[bytes] | None = None
        self._server_in = -1
        self._server_out = -1
        self._client_lock = threading.Lock()
        self._client_gone = False
        self._server_lock = threading.Lock()
        self._lock = threading.Lock()  # the session is driven by one thread at a time
        self._session = ProxySession(
            archetype=archetype,
            get_table=get_table,
            agent_id=agent_id,
            session_id=session_id,
            observe=observe,
            approval=approver is not None,
            recorder=self.recorder,
            max_message_bytes=max_message_bytes,
            max_depth=max_depth,
            learning=learning,
            flows=flows,
            pins=pins,
        )
        self.session_id = self._session.session_id
        self._killed_by_policy = ""  # the rule that killed the server, once one has
        self._kill_done = threading.Event()  # set once a tool-rule kill is complete
        self._shutdown_started = False
        self._escalation: threading.Thread | None = None  # a forwarded signal's SIGKILL timer
        self._escalated = 0  # the signal the server ignored until it was killed, if any
        self._output_closed = False  # the server closed its stdout while still running
        self._server_reader: threading.Thread | None = None

    @property
    def server_pid(self) -> int | None:
        """The server's pid (also its process-group id), once started: what a flow
        correlator joins flows on."""
        return self._proc.pid if self._proc is not None else None

    # --- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Start the server, proxy until it exits, return the exit code for the proxy."""
        _tune_malloc()
        try:
            self._proc = spawn_server([*self.launcher, *self.command], env=self.env, cwd=self.cwd)
        except OSError as e:
            print(f"mcp-defense: cannot start server {self.command[0]!r}: {e}", file=sys.stderr)
            return EXIT_SPAWN_FAILED
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        self._server_in = proc.stdin.fileno()
        self._server_out = proc.stdout.fileno()
        for fd in (self._server_in, self._server_out, self.stdin_fd, self.stdout_fd):
            _set_pipe_size(fd)

        if self.recorder.active:
            self.recorder.emit(
                SessionStart(
                    session_id=self.session_id,
                    agent_id=self.agent_id,
                    archetype=self.archetype,
                    policy_version=self._table_version(),
                    variables=self._table_variables(),
                    server_command=self.command,
                    server_pid=proc.pid,
                    observe=self.observe,
                    sandbox=self.sandbox,
                    env_withheld=self.env_withheld,
                    env_credentials=self.env_credentials,
                )
            )
        if self.flows is not None:
            self.flows.server_started(proc.pid, self.session_id)

        previous = self._install_signal_handlers()
        try:
            self._server_reader = threading.Thread(
                target=self._server_loop, name="mcpd-server->client", daemon=True
            )
            self._server_reader.start()
            threading.Thread(
                target=self._client_loop, name="mcpd-client->server", daemon=True
            ).start()
            returncode = proc.wait()
            # Let responses the server wrote before exiting reach the client first.
            self._server_reader.join(timeout=1.0)
            if self._killed_by_policy:  # a tool rule's kill: let its event go out first
                self._kill_done.wait(KILL_SETTLE_S)
            elif self.flows is not None:  # a flow rule's kill, if any, likewise
                self._killed_by_policy = self.flows.server_exited(proc.pid)
            if self._killed_by_policy:
                why = f"was killed by policy ({self._killed_by_policy})"
            elif self._escalated:
                why = f"ignored {signal.Signals(self._escalated).name} and was killed"
            else:
                why = f"exited (code {returncode})"
            pending = self._fail_pending(f"mcp-defense: the MCP server {why} before answering")
            if self.recorder.active:
                self.recorder.emit(
                    ServerExit(server_pid=proc.pid, returncode=returncode, pending_requests=pending)
                )
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self.flows is not None:
                self.flows.close()
        if self._killed_by_policy:
            return EXIT_KILLED_BY_POLICY
        if self._escalated:
            return 128 + self._escalated
        return 128 - returncode if returncode < 0 else returncode

    def _table_variables(self) -> dict[str, str]:
        try:
            return {str(k): str(v) for k, v in getattr(self.get_table(), "variables", {}).items()}
        except Exception:  # noqa: BLE001 - reporting only
            return {}

    def _table_version(self) -> str:
        return self._session.table_version()

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous
        for signum in FORWARDED_SIGNALS:
            previous[signum] = signal.signal(signum, self._forward_signal)
        return previous

    def _forward_signal(self, signum: int, _frame: Any) -> None:
        """Pass the signal on; if the server is still running `term_grace_s` later, SIGKILL
        its group: the proxy then answers what is pending, records server_exit and exits
        128 + signum (143 for SIGTERM), as if it had died of the signal itself."""
        self._signal_server(signum)
        if self._escalation is None:
            self._escalation = threading.Thread(
                target=self._escalate, args=(signum,), name="mcpd-escalate", daemon=True
            )
            self._escalation.start()

    def _escalate(self, signum: int) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=self.term_grace_s)
            return  # the server obeyed: its own exit code stands
        except subprocess.TimeoutExpired:
            pass
        self._escalated = signum
        print(
            f"mcp-defense: the MCP server ignored {signal.Signals(signum).name} for "
            f"{self.term_grace_s:g}s; killing it",
            file=sys.stderr,
        )
        self._signal_server(signal.SIGKILL)

    def _signal_server(self, signum: int) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass

    def _shutdown_server(self) -> None:
        """Client EOF: close the server's stdin, wait, then TERM, wait, then KILL (the group)."""
        if self._shutdown_started:
            return
        self._shutdown_started = True
        proc = self._proc
        assert proc is not None
        try:
            assert proc.stdin is not None
            proc.stdin.close()  # via the file object, so the descriptor is never closed twice
        except OSError:
            pass
        for signum, grace in ((None, self.shutdown_grace_s), (signal.SIGTERM, self.term_grace_s)):
            if signum is not None:
                self._signal_server(signum)
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
        self._signal_server(signal.SIGKILL)

    def _fail_pending(self, message: str) -> int:
        n = self._session.pending
        self._execute(self._session.server_gone(message))
        return n

    # --- writing -------------------------------------------------------------------------------

    def _write_client(self, data: bytes) -> None:
        if self._client_gone:
            return
        with self._client_lock:
            try:
                _write_all(self.stdout_fd, data)
            except OSError:
                # The client closed its end; keep draining the server so it never blocks,
                # and let client EOF (on stdin) drive the shutdown.
                self._client_gone = True

    def _forward_to_server(self, line: bytes, rid: Any = None) -> None:
        data = line if line.endswith(b"\n") else line + b"\n"
        try:
            if self.approver is None:  # the client thread is the only writer
                _write_all(self._server_in, data)
            else:  # approval threads forward too: one whole message at a time on the pipe
                with self._server_lock:
                    _write_all(self._server_in, data)
        except OSError:
            with self._lock:
                actions = self._session.server_write_failed(rid)
            self._execute(actions)

    # --- client -> server ----------------------------------------------------------------------

    def _client_loop(self) -> None:
        framer = LineFramer(self.max_message_bytes)
        read = os.read
        fd = self.stdin_fd
        handle = self._handle_client
        limit = self.max_message_bytes + 1  # a line plus its newline
        try:
            while True:
                try:
                    chunk = read(fd, READ_SMALL if framer.partial < READ_SMALL else READ_LARGE)
                except BlockingIOError:  # a non-blocking descriptor inherited from the client
                    select.select([fd], [], [])
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                if (
                    not framer.partial
                    and chunk.find(b"\n") == len(chunk) - 1
                    and len(chunk) <= limit
                ):
                    handle(chunk)  # the common case: exactly one whole message per read
                    continue
                for item in framer.feed(chunk):
                    handle(item)
            tail = framer.finish()
            if tail is not None:
                handle(tail)
        finally:
            self._shutdown_server()

    def _handle_client(self, item: bytes | Oversize) -> None:
        if self._elicits and self._elicitation_answer(item):
            return
        with self._lock:
            actions = self._session.client_message(item)
        if len(actions) == 1 and type(actions[0]) is ToServer:  # the common case
            self._forward_to_server(actions[0].data, actions[0].request_id)
        else:
            self._execute(actions)

    # --- driving the session -------------------------------------------------------------------

    def _execute(self, actions: list[ProxyAction]) -> None:
        """Carry out what the session said, in order (outside the session lock: a write may
        block on a full pipe, and the other direction must keep draining meanwhile)."""
        for a in actions:
            t = type(a)
            if t is ToClient:
                self._write_client(a.data)  # type: ignore[union-attr]
            elif t is ToServer:
                self._forward_to_server(a.data, a.request_id)  # type: ignore[union-attr]
            elif t is AskApproval:
                self._start_approval(a)  # type: ignore[arg-type]
            elif t is Kill:
                self.kill_server(a.rule, a.reason, a.correlation_ids)  # type: ignore[union-attr]

    def _start_approval(self, ask: AskApproval) -> None:
        """Ask on a thread of its own, so one prompt never stalls other messages: through the
        client (MCP elicitation) when it declared it can, else on the terminal."""
        approver = self.approver
        if approver is None:  # cannot happen: the session asks only when approval is on
            self._answered(ask.ticket, False, f"no approver: {ask.decision.reason}")
            return
        if can_elicit(self._session.client_capabilities):
            self._elicit(ask, approver.timeout_s)
            return

        def run() -> None:
            try:
                res = approver.ask(
                    tool=ask.tool,
                    arguments=ask.arguments,
                    decision=ask.decision,
                    correlation_id=ask.correlation_id,
                )
                approved, reason = res.approved, res.reason
            except Exception as e:  # noqa: BLE001 - fail closed
                approved, reason = False, f"approval failed ({e}): {ask.decision.reason}"
            self._answered(ask.ticket, approved, reason)

        threading.Thread(target=run, name=f"mcpd-approval-{ask.ticket}", daemon=True).start()

    def _elicit(self, ask: AskApproval, timeout_s: float) -> None:
        eid = f"{ELICIT_PREFIX}{ask.ticket}-{os.urandom(4).hex()}"
        done = threading.Event()
        box: list[tuple[bool, str]] = []
        with self._lock:
            self._elicits[eid] = (done, box)
        self._write_client(encode(elicitation_request(eid, ask)))

        def wait() -> None:
            answered = done.wait(timeout_s)
            with self._lock:
                self._elicits.pop(eid, None)
            if answered and box:
                approved, reason = box[0]
            else:
                approved, reason = False, f"approval timed out after {timeout_s:g}s"
            self._answered(ask.ticket, approved, reason)

        threading.Thread(target=wait, name=f"mcpd-elicit-{ask.ticket}", daemon=True).start()

    def _elicitation_answer(self, item: bytes | Oversize) -> bool:
        """The client's answer to the proxy's own question: taken here, never forwarded."""
        if type(item) is not bytes or _ELICIT_ID not in item[:512]:
            return False
        msg = parse_message(item)
        if not is_answer(msg):
            return False
        with self._lock:
            entry = self._elicits.pop(msg.id, None)
        if entry is not None:
            entry[1].append(verdict(msg))
            entry[0].set()
        return True

    def _answered(self, ticket: int, approved: bool, reason: str) -> None:
        with self._lock:
            actions = self._session.approval_answered(ticket, approved, reason)
        self._execute(actions)

    def kill_server(
        self,
        rule: str,
        reason: str,
        correlation_ids: Sequence[str] = (),
        flow: dict[str, Any] | None = None,
    ) -> None:
        """Kill the server and its whole tree now (a tool rule's `kill`; a flow rule's kill is
        the correlator's, see proxy/flows.py), through the same kill path: freeze the group,
        SIGKILL it and any member that left it, verify death. The proxy then exits 1 after
        answering pending requests."""
        proc = self._proc
        if proc is None:
            return
        self._killed_by_policy = rule or "kill"
        print(
            f"mcp-defense: killing server pid {proc.pid}: [{printable(rule)}] {printable(reason)}",
            file=sys.stderr,
        )
        try:
            report = kill_tree(proc.pid, pgid=proc.pid)
            killed, survivors = list(report.pids), list(report.survivors)
        except Exception:  # noqa: BLE001 - the plain group kill still has to happen
            self._signal_server(signal.SIGKILL)
            killed, survivors = [], []
        try:
            if self.recorder.active:
                self.recorder.emit(
                    KillEvent(
                        server_pid=proc.pid,
                        rule=rule,
                        reason=reason,
                        flow=dict(flow or {}),
                        correlation_ids=list(correlation_ids),
                        killed_pids=killed,
                        survivors=survivors,
                    )
                )
        finally:
            self._kill_done.set()

    def _server_loop(self) -> None:
        framer = LineFramer(self.max_message_bytes)
        read = os.read
        fd = self._server_out
        handle = self._handle_server
        limit = self.max_message_bytes + 1
        while True:
            try:
                chunk = read(fd, READ_SMALL if framer.partial < READ_SMALL else READ_LARGE)
            except BlockingIOError:
                select.select([fd], [], [])
                continue
            except OSError:
                break
            if not chunk:
                break
            if not framer.partial and chunk.find(b"\n") == len(chunk) - 1 and len(chunk) <= limit:
                handle(chunk)  # exactly one whole message
                continue
            for item in framer.feed(chunk):
                handle(item)
        tail = framer.finish()
        if tail is not None:
            handle(tail)
        self._server_output_closed()

    def _server_output_closed(self) -> None:
        """The server's stdout reached EOF. Normally it is exiting (the main thread then
        fails what is pending, naming its exit code); if it is still running a moment later
        it can never answer again: fail pending and new calls now and stop it."""
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=OUTPUT_CLOSED_SETTLE_S)
            return
        except subprocess.TimeoutExpired:
            pass
        self._output_closed = True
        print(
            f"mcp-defense: the MCP server (pid {proc.pid}) closed its output but keeps "
            "running; stopping it",
            file=sys.stderr,
        )
        with self._lock:
            actions = self._session.server_gone(
                "mcp-defense: the MCP server closed its output and can no longer answer"
            )
        self._execute(actions)
        self._shutdown_server()

    def _handle_server(self, item: bytes | Oversize) -> None:
        with self._lock:
            actions = self._session.server_message(item)
        if len(actions) == 1 and type(actions[0]) is ToClient:  # the common case
            self._write_client(actions[0].data)
        else:
            self._execute(actions)


def _safe_version(table: Any) -> str:
    try:
        return str(table.version)
    except Exception:  # noqa: BLE001
        return ""
