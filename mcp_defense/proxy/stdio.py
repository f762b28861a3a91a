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
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mcp_defense.correlate.kill import kill_server as kill_tree
from mcp_defense.events.model import (
    FramingEvent,
    KillEvent,
    ServerExit,
    SessionStart,
    ToolCallEvent,
    ToolResultEvent,
    new_correlation_id,
)
from mcp_defense.events.record import Recorder, now_iso_fast, printable
from mcp_defense.policy.facts import Action, Decision, ToolCall
from mcp_defense.policy.table import LearningState
from mcp_defense.protocol.jsonrpc import (
    DECIDED_METHODS,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_MESSAGE_BYTES,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MESSAGE_TOO_LARGE,
    POLICY_DENIED,
    SERVER_CLOSED,
    Kind,
    LineFramer,
    Message,
    Oversize,
    encode,
    error_response,
    parse_message,
    response_info,
    sniff_id,
)
from mcp_defense.proxy.approval import Approver

# Reads of 256 KiB or more cost ~20 µs each here (malloc turns them into mmap/munmap), so
# small messages are read 64 KiB at a time and only a line already that long gets 1 MiB reads.
READ_SMALL = 1 << 16
READ_LARGE = 1 << 20
PIPE_SIZE = 1 << 20  # ask the kernel for 1 MiB pipes: 16x fewer syscalls on large messages
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# SIGHUP is not forwarded: it is the policy-reload signal (proxy/reload.py).
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_SPAWN_FAILED = 127
EXIT_KILLED_BY_POLICY = 1
# How long the main thread, woken by the server's death, waits for a kill in progress to
# finish (the kill path verifies the whole tree is dead) so its event precedes server_exit.
KILL_SETTLE_S = 5.0


class TableLike(Protocol):
    """What the proxy needs from a compiled DecisionTable."""

    @property
    def version(self) -> str: ...

    def decide(self, call: ToolCall) -> Decision: ...


class FlowHooks(Protocol):
    """What the proxy tells a flow correlator (`proxy.flows.FlowMonitor`): the server's
    life and each forwarded call's, so flows can be joined to the calls that caused them."""

    def server_started(self, pid: int, session_id: str) -> None: ...

    def call_opened(self, correlation_id: str) -> None: ...

    def call_closed(self, correlation_id: str) -> None: ...

    def server_exited(self, pid: int) -> str: ...  # the rule of a flow kill, or ""

    def close(self) -> None: ...


@dataclass(slots=True)
class _Pending:
    method: str
    correlation_id: str
    t0: float


@dataclass(slots=True)
class _Outcome:
    """What to do with one tools/call after policy and approval."""

    forward: bool
    correlation_id: str
    error: dict[str, Any] | None = None  # JSON-RPC error object when not forwarded
    kill: Decision | None = None


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
    ) -> None:
        if not command:
            raise ValueError("no server command given")
        self.command = list(command)
        self.archetype = archetype
        self.get_table = get_table
        self.agent_id = agent_id
        self.observe = observe
        self.approver = approver
        self.recorder = recorder or Recorder()
        self.max_message_bytes = max_message_bytes
        self.max_depth = max_depth
        self.session_id = session_id or f"ses_{uuid.uuid4().hex[:16]}"
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.shutdown_grace_s = shutdown_grace_s
        self.term_grace_s = term_grace_s
        self.env = env
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
        self._pending: dict[Any, _Pending] = {}
        self._annotations: dict[str, dict[str, Any]] = {}
        self._killed_by_policy = ""  # the rule that killed the server, once one has
        self._kill_done = threading.Event()  # set once a tool-rule kill is complete
        self._shutdown_started = False
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
            self._proc = subprocess.Popen(
                [*self.launcher, *self.command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,  # the server's stderr is ours: passes through untouched
                bufsize=0,
                start_new_session=True,  # its own process group: signals and kills reach the tree
                env=self.env,
                cwd=self.cwd,
            )
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
                    server_command=self.command,
                    server_pid=proc.pid,
                    observe=self.observe,
                    sandbox=self.sandbox,
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
            why = (
                f"was killed by policy ({self._killed_by_policy})"
                if self._killed_by_policy
                else f"exited (code {returncode})"
            )
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
        return 128 - returncode if returncode < 0 else returncode

    def _table_version(self) -> str:
        try:
            return str(self.get_table().version)
        except Exception:  # noqa: BLE001 - reporting only
            return ""

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous
        for signum in FORWARDED_SIGNALS:
            previous[signum] = signal.signal(signum, self._forward_signal)
        return previous

    def _forward_signal(self, signum: int, _frame: Any) -> None:
        self._signal_server(signum)

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
        pending, self._pending = self._pending, {}
        for rid, p in pending.items():
            self._answer(rid, SERVER_CLOSED, message)
            self._close_flow_window(p)
            if p.correlation_id and self.recorder.active:
                self.recorder.emit(
                    ToolResultEvent(
                        correlation_id=p.correlation_id,
                        request_id=rid,
                        is_error=True,
                        duration_ms=(time.perf_counter() - p.t0) * 1e3,
                    )
                )
        return len(pending)

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

    def _answer(self, rid: Any, code: int, message: str, data: Any = None) -> None:
        self._write_client(error_response(rid, code, message, data))

    def _forward_to_server(self, line: bytes, rid: Any = None) -> None:
        try:
            _write_all(self._server_in, line if line.endswith(b"\n") else line + b"\n")
        except OSError:
            p = self._pending.pop(rid, None) if rid is not None else None
            if p is not None:
                self._close_flow_window(p)
                self._answer(
                    rid, SERVER_CLOSED, "mcp-defense: the MCP server is not accepting input"
                )

    def _close_flow_window(self, p: _Pending) -> None:
        """A forwarded request is over (answered or failed): its flow window starts closing."""
        if p.correlation_id and self.flows is not None:
            self.flows.call_closed(p.correlation_id)

    def _refuse(
        self, direction: str, reason: str, rid: Any, size: int, code: int, answer: bool = True
    ) -> None:
        """Drop a message, answer its sender with an error (id null if unknown, as JSON-RPC
        asks for unparseable input), and record why."""
        if answer and (direction == "client->server" or rid is not None):
            self._answer(rid, code, f"mcp-defense: {reason}")
        if self.recorder.active:
            self.recorder.emit(
                FramingEvent(direction=direction, reason=reason, request_id=rid, size=size)
            )
        else:
            print(f"mcp-defense: refused {direction} message: {printable(reason)}", file=sys.stderr)

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
        if type(item) is Oversize:
            self._refuse(
                "client->server",
                f"message of {item.size} bytes exceeds --max-message-bytes {self.max_message_bytes}",
                sniff_id(item.head),
                item.size,
                MESSAGE_TOO_LARGE,
            )
            return
        line: bytes = item  # type: ignore[assignment]
        if line.isspace():
            return  # blank keep-alive lines are not messages
        msg = parse_message(line, self.max_depth)
        kind = msg.kind
        if kind is Kind.REQUEST:
            if msg.method in DECIDED_METHODS:
                out = self._decide_call(msg)
                if out.forward:
                    self._pending[msg.id] = _Pending(
                        msg.method, out.correlation_id, time.perf_counter()
                    )
                    if self.flows is not None:  # before the server can act on it
                        self.flows.call_opened(out.correlation_id)
                    self._forward_to_server(line, msg.id)
                else:
                    self._write_client(encode({"jsonrpc": "2.0", "id": msg.id, "error": out.error}))
                    if out.kill is not None:
                        self.kill_server(out.kill.rule, out.kill.reason, [out.correlation_id])
                return
            self._pending[msg.id] = _Pending(msg.method or "", "", time.perf_counter())
            self._forward_to_server(line, msg.id)
        elif kind is Kind.NOTIFICATION:
            if msg.method == "tools/call":
                # A notification cannot be answered; dropping it unanswered is the only safe choice.
                self._refuse(
                    "client->server",
                    "tools/call sent as a notification (no id)",
                    None,
                    len(line),
                    0,
                    answer=False,
                )
                return
            self._forward_to_server(line)
        elif kind is Kind.RESPONSE or kind is Kind.ERROR:
            self._forward_to_server(line)  # the client answering a server request
        elif kind is Kind.BATCH:
            self._handle_batch(msg, line)
        else:
            self._refuse("client->server", msg.error_message, msg.id, len(line), msg.error_code)

    def _handle_batch(self, msg: Message, line: bytes) -> None:
        """Forward the batch unchanged only if every element is valid and allowed."""
        errors: dict[int, dict[str, Any]] = {}
        kill: tuple[Decision, str] | None = None
        forwarded_calls: dict[int, str] = {}
        for i, el in enumerate(msg.elements):
            if el.kind is Kind.INVALID:
                errors[i] = {
                    "code": el.error_code,
                    "message": f"mcp-defense: batch element {i}: {el.error_message}",
                }
            elif el.kind is Kind.NOTIFICATION and el.method == "tools/call":
                errors[i] = {
                    "code": INVALID_REQUEST,
                    "message": f"mcp-defense: batch element {i}: tools/call without id",
                }
            elif el.kind is Kind.BATCH:
                errors[i] = {
                    "code": INVALID_REQUEST,
                    "message": f"mcp-defense: batch element {i}: nested batch",
                }
            elif el.kind is Kind.REQUEST and el.method in DECIDED_METHODS:
                out = self._decide_call(el)
                if out.forward:
                    forwarded_calls[i] = out.correlation_id
                else:
                    errors[i] = out.error or {}
                    if out.kill is not None and kill is None:
                        kill = (out.kill, out.correlation_id)
        if not errors:
            now = time.perf_counter()
            for i, el in enumerate(msg.elements):
                if el.kind is Kind.REQUEST:
                    self._pending[el.id] = _Pending(
                        el.method or "", forwarded_calls.get(i, ""), now
                    )
            if self.flows is not None:
                for cid in forwarded_calls.values():
                    self.flows.call_opened(cid)
            self._forward_to_server(line)
            return
        first = min(errors)
        answers = []
        for i, el in enumerate(msg.elements):
            if el.id is None or el.kind not in (Kind.REQUEST, Kind.INVALID):
                continue  # notifications and the client's own responses get no answer
            err = errors.get(i) or {
                "code": INVALID_REQUEST,
                "message": f"mcp-defense: batch refused because element {first} was refused "
                "(a batch is forwarded only if every element is allowed)",
            }
            answers.append({"jsonrpc": "2.0", "id": el.id, "error": err})
        if self.recorder.active:
            self.recorder.emit(
                FramingEvent(
                    direction="client->server",
                    reason=f"batch of {len(msg.elements)} refused: element {first}: {errors[first].get('message', '')}",
                    size=len(line),
                )
            )
        if answers:
            self._write_client(encode(answers))
        if kill is not None:
            self.kill_server(kill[0].rule, kill[0].reason, [kill[1]])

    def _decide_call(self, msg: Message) -> _Outcome:
        """Decide one tools/call (policy, then approval), record it, say what to do."""
        cid = new_correlation_id()
        params = msg.params
        if type(params) is not dict:
            self._record_framing(f"tools/call params must be an object (correlation {cid})", msg.id)
            return _Outcome(
                False,
                cid,
                {
                    "code": INVALID_PARAMS,
                    "message": "mcp-defense: tools/call params must be an object",
                },
            )
        if msg.method == "tools/call":
            tool = params.get("name")
            arguments = params.get("arguments", {})
        else:
            # resources/read, prompts/get: a `file://` URI or a prompt argument reaches for
            # the same files a tool would, so the same rules decide (as tool "resources/read").
            tool = msg.method
            arguments = params
        table = self.get_table()  # read once: the whole call runs under this table
        call = ToolCall(
            archetype=self.archetype,
            tool=tool,
            arguments=arguments,
            agent_id=self.agent_id,
            session_id=self.session_id,
            correlation_id=cid,
            annotations=self._annotations.get(tool) if type(tool) is str else None,
        )
        try:
            if self.learning is not None:
                decision = table.decide(call, self.learning)
            else:
                decision = table.decide(call)
        except Exception as e:  # noqa: BLE001 - the table must never raise; if it does, fail closed
            decision = Decision(
                Action.DENY,
                "internal_error",
                f"policy evaluation failed: {e}",
                _safe_version(table),
                cid,
            )
        action = decision.action
        reason = decision.reason
        approval = ""
        if self.observe:
            forward = True
        elif action is Action.ALLOW or action is Action.ALERT:
            forward = True
        elif action is Action.REQUIRE_APPROVAL:
            if self.approver is None:
                forward = False
                reason = f"approval required (the proxy runs without --approval): {decision.reason}"
            else:
                res = self.approver.ask(
                    tool=str(tool), arguments=arguments, decision=decision, correlation_id=cid
                )
                forward = res.approved
                reason = res.reason
            approval = "approved" if forward else "rejected"
        else:
            forward = False
        tool_name = tool if type(tool) is str else json.dumps(tool)
        if self.recorder.active:
            self.recorder.emit(
                ToolCallEvent.decided(
                    call,
                    decision,
                    ts=now_iso_fast(),
                    tool=tool_name,
                    reason=reason,
                    request_id=msg.id,
                    enforced=not self.observe and not decision.learning,
                    approval=approval,
                )
            )
        if forward:
            return _Outcome(True, cid)
        verb = {"kill": "killed", "require_approval": "not approved"}.get(action.value, "denied")
        error = {
            "code": POLICY_DENIED,
            "message": f"mcp-defense: tool call {tool_name} {verb} by policy: {reason}",
            "data": {
                "decision": action.value,
                "rule": decision.rule,
                "reason": reason,
                "correlation_id": cid,
                "policy_version": decision.policy_version,
                "tool": tool_name,
                "approval": approval,
            },
        }
        return _Outcome(False, cid, error, decision if action is Action.KILL else None)

    def _record_framing(self, reason: str, rid: Any) -> None:
        if self.recorder.active:
            self.recorder.emit(
                FramingEvent(direction="client->server", reason=reason, request_id=rid)
            )

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

    # --- server -> client ----------------------------------------------------------------------

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

    def _handle_server(self, item: bytes | Oversize) -> None:
        if type(item) is Oversize:
            rid = sniff_id(item.head)
            p = self._pending.pop(rid, None) if rid is not None else None
            if p is not None:
                self._close_flow_window(p)
            self._refuse(
                "server->client",
                f"server message of {item.size} bytes exceeds --max-message-bytes {self.max_message_bytes}",
                rid if p is not None else None,
                item.size,
                MESSAGE_TOO_LARGE,
            )
            return
        if self._pending:
            self._match_response(item)  # type: ignore[arg-type]
        self._write_client(item)  # type: ignore[arg-type]

    def _match_response(self, line: bytes) -> None:
        """Close the pending request this line answers (and record its result)."""
        recording = self.recorder.active
        if recording:
            info = response_info(line)
            rid, is_error = (info.id, info.is_error) if info is not None else (None, False)
        else:
            rid, is_error = sniff_id(line), False
        if rid is None:
            if line.lstrip()[:1] == b"[":
                self._match_batch_response(line)
            return
        p = self._pending.pop(rid, None)
        if p is None:
            return
        if p.correlation_id and self.flows is not None:
            self.flows.call_closed(p.correlation_id)
        if p.method == "tools/list":
            self._learn_annotations(line)
        if p.correlation_id and recording:
            self.recorder.emit(
                ToolResultEvent(
                    ts=now_iso_fast(),
                    correlation_id=p.correlation_id,
                    request_id=rid,
                    is_error=is_error,
                    duration_ms=(time.perf_counter() - p.t0) * 1e3,
                    size=len(line),
                )
            )

    def _match_batch_response(self, line: bytes) -> None:
        msg = parse_message(line, self.max_depth)
        for el in msg.elements:
            if el.kind in (Kind.RESPONSE, Kind.ERROR):
                p = self._pending.pop(el.id, None)
                if p is not None:
                    self._close_flow_window(p)
                if p is not None and p.correlation_id and self.recorder.active:
                    self.recorder.emit(
                        ToolResultEvent(
                            correlation_id=p.correlation_id,
                            request_id=el.id,
                            is_error=el.kind is Kind.ERROR,
                            duration_ms=(time.perf_counter() - p.t0) * 1e3,
                        )
                    )

    def _learn_annotations(self, line: bytes) -> None:
        """Keep each tool's advertised annotations: untrusted hints, but facts for rules."""
        msg = parse_message(line, self.max_depth)
        result = msg.obj.get("result") if msg.kind is Kind.RESPONSE else None
        tools = result.get("tools") if type(result) is dict else None
        if type(tools) is not list:
            return
        for t in tools:
            if (
                type(t) is dict
                and type(t.get("name")) is str
                and type(t.get("annotations")) is dict
            ):
                self._annotations[t["name"]] = t["annotations"]


def _safe_version(table: Any) -> str:
    try:
        return str(table.version)
    except Exception:  # noqa: BLE001
        return ""
