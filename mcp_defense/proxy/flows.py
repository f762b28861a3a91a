"""The proxy's side of flow correlation: one `Correlator` per proxied server.

Why a separate object: the stdio proxy knows calls and a child process, the correlator knows
flows and sessions. This glue turns the proxy's lifecycle into correlator calls (server
started -> register it and start the `--flow-source`s; call forwarded -> `open_call`;
answered, failed or server gone -> `close_call`), and a flow `kill` verdict into the proxy's
exit. The correlator kills the server's process group (`correlate.kill`) and emits the
`kill` event from the source's thread; the proxy's main thread, woken by the server's death,
asks `server_exited` for the rule, which waits until that event is out, so a recording
always reads flow -> kill -> server_exit and the pending calls fail naming the rule.

Flow rules are decided with the table in force at the time of the flow (`get_table` is the
proxy's, so a hot reload applies to flows too); the join keys and window are the ones the
policy had at start (`--window` overrides the window).
"""

from __future__ import annotations

import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from mcp_defense.correlate.correlator import Correlator
from mcp_defense.correlate.kill import KillReport
from mcp_defense.correlate.proctree import session_cgroup_id
from mcp_defense.correlate.sources import FlowSource, open_source, parse_duration
from mcp_defense.events.model import Event, KillEvent
from mcp_defense.events.record import printable
from mcp_defense.policy.facts import Action, Decision, FlowFacts, JoinSpec
from mcp_defense.proxy.stdio import KILL_SETTLE_S


def parse_window(text: str) -> float:
    """`--window`: '5s', '500ms' or plain seconds; must be positive."""
    window = parse_duration(text)
    if window <= 0:
        raise ValueError(f"--window must be positive, got {text!r}")
    return window


_SCHEMES = ("procfs", "jsonl", "tetragon")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def check_flow_spec(spec: str) -> None:
    """Refuse a `--flow-source` that would silently run without correlation: an unknown
    scheme (`prcfs`, `tetragn:/x`), or a file that does not exist and is not a FIFO (a
    source file must exist when the proxy starts; it is then followed as it grows)."""
    kind, sep, rest = spec.partition(":")
    if kind == "procfs":
        return
    m = _SCHEME.match(spec)
    if m is not None and kind not in _SCHEMES and not os.path.exists(spec):
        raise ValueError(
            f"unknown flow source scheme {kind + ':'!r} in {spec!r} "
            "(use procfs[:INTERVAL], jsonl:PATH, tetragon:PATH or a PATH)"
        )
    path = rest if sep and kind in _SCHEMES else spec
    if not path:
        return  # open_source says what is missing
    try:
        st = os.stat(path)
    except OSError as e:
        hint = " (did you mean procfs?)" if "/" not in spec and spec.lower() != "procfs" else ""
        raise ValueError(
            f"flow source {spec!r}: {path}: {e.strerror or e}{hint}; "
            "a flow source is procfs[:INTERVAL], or an existing file or FIFO"
        ) from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        raise ValueError(f"flow source {spec!r}: {path} is not a file or a FIFO")


def _stderr(message: str) -> None:
    print(f"mcp-defense: {printable(message)}", file=sys.stderr, flush=True)


class FlowMonitor:
    """Joins the flows of one proxied server to its calls and kills it on a `kill` verdict.

    Built before the server starts (so a bad `--flow-source` is a usage error, not a crash
    mid-session); sources start with the server.
    """

    def __init__(
        self,
        specs: Sequence[str],
        *,
        join: JoinSpec,
        archetype: str,
        get_table: Callable[[], Any],
        emit: Callable[[Event], None],
        window_s: float | None = None,
        agent_id: str = "",
        observe: bool = False,
        report: Callable[[str], None] = _stderr,
    ) -> None:
        if not specs:
            raise ValueError("no flow source given")
        self.archetype = archetype
        self.get_table = get_table
        self.agent_id = agent_id
        self.observe = observe
        self.session_id = ""
        self._report = report
        if window_s is not None:
            join = replace(join, window_s=window_s)
        self.correlator = Correlator(join, self._decide, emit, on_kill=self._on_kill)
        self._server_pid = 0
        self._cgroup_id = 0
        self._killed = threading.Event()
        self._kill_rule = ""
        for spec in specs:
            check_flow_spec(spec)
        # Built now (a bad spec raises ValueError here), started in server_started().
        self._sources: list[FlowSource] = [
            open_source(
                spec,
                server_pid_getter=self._roots,
                proctree=self.correlator.proctree,
                on_error=lambda m: report(f"flow source: {m}"),
            )
            for spec in specs
        ]
        self._started = False

    def _roots(self) -> int | None:
        return self._server_pid or None

    def _decide(self, flow: FlowFacts, orphan: bool) -> Decision:
        d: Decision = self.get_table().decide_flow(
            self.archetype, flow, orphan, agent_id=self.agent_id, session_id=self.session_id
        )
        if self.observe and d.action is Action.KILL:
            # --observe blocks nothing: record what would have happened, as learning mode does.
            return replace(d, action=Action.ALERT, reason=f"--observe, would kill: {d.reason}")
        return d

    def _on_kill(self, report: KillReport, event: KillEvent) -> None:
        self._kill_rule = event.rule or "kill"
        flow = event.flow
        others = len(report.pids) - 1
        tree = f" and {others} other process(es) of its tree" if others > 0 else ""
        msg = (
            f"killed server pid {report.server_pid}{tree}: [{event.rule}] {event.reason}; flow "
            f"{flow.get('dst_ip', '')}:{flow.get('dst_port', '')} from pid "
            f"{flow.get('pid', '')}, call(s) {', '.join(event.correlation_ids) or 'none'}"
        )
        if report.survivors:
            msg += f"; still alive after SIGKILL: {list(report.survivors)}"
        self._report(msg)
        self._killed.set()

    # -- the proxy's hooks (see StdioProxy's FlowHooks) ------------------------------------
    def server_started(self, pid: int, session_id: str) -> None:
        """The server runs as `pid`, leader of its own process group: watch it."""
        self.session_id = session_id
        self._server_pid = pid
        self._cgroup_id = session_cgroup_id(pid)
        self.correlator.register_server(pid, cgroup_id=self._cgroup_id, pgid=pid)
        if not self._started:
            self._started = True
            for src in self._sources:
                self.correlator.add_source(src)

    def call_opened(self, correlation_id: str) -> None:
        """A request is about to reach the server: flows from now on may be its doing."""
        self.correlator.open_call(
            correlation_id, server_pid=self._server_pid, cgroup_id=self._cgroup_id
        )

    def call_closed(self, correlation_id: str) -> None:
        """Its answer went back (or it failed): its window ends `window_s` from now."""
        self.correlator.close_call(correlation_id)

    def server_exited(self, pid: int) -> str:
        """The rule whose flow verdict killed the server ("" if none did), once the kill is
        complete and its event emitted."""
        if self.correlator.kill_report(pid) is None:
            return ""
        self._killed.wait(KILL_SETTLE_S)
        return self._kill_rule or "kill"

    def close(self) -> None:
        """Stop the sources (the proxy is exiting)."""
        self.correlator.close()
        if self._server_pid:
            self.correlator.unregister_server(self._server_pid)
