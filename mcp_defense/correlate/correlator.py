"""The correlator: joins network flows to the tool calls that can explain them.

A runtime over the compiled `correlate` block (`JoinSpec`): every tools/call that reaches
the server opens a session (`open_call`), closed when its response comes back
(`close_call`). A flow joins every session

- whose keys match, taking for each session the *first key both sides know*, in the
  spec's order (by default the cgroup id, then the pid: a session and a flow that both
  know a cgroup id are compared on it alone; when either does not, on pid, where the flow's
  pid matches the server pid, a pid listed with the call, or a descendant of one of them);
- and whose window covers it: from the call's start to its end plus `window_s` (an open
  call covers everything after its start).

A flow that joins nothing is an orphan. The injected `decide_flow(flow, is_orphan)` (the
DecisionTable's flow/orphan rules) gives the verdict; a `FlowEvent` goes to `emit`, and a
`kill` verdict kills the server(s) the flow belongs to (`kill.kill_server`) and emits a
`KillEvent` per server.

Sessions are indexed by cgroup id and by pid, so a join costs a few dict lookups whatever
the number of open sessions; closed sessions are expired lazily, from a heap ordered by
expiry, against a watermark that only the timestamps passed in move (no wall-clock reads on
the hot path, and replays are deterministic).

Thread-safety: sources call `on_flow` from their threads while the proxy opens and closes
calls from its own; the index is guarded by one lock. `decide_flow`, `emit`, the killer and
`on_kill` run outside it, in the calling (source) thread, so `emit` must be thread-safe.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

from mcp_defense.correlate.kill import KillReport, kill_server
from mcp_defense.correlate.proctree import ProcTree
from mcp_defense.correlate.sources import ErrorSink, FlowSource, open_source
from mcp_defense.events.model import Event, FlowEvent, KillEvent
from mcp_defense.policy.facts import Action, Decision, FlowFacts, JoinSpec

log = logging.getLogger("mcp_defense.correlate")

DecideFlow = Callable[[FlowFacts, bool], Decision]
Emit = Callable[[Event], None]
Killer = Callable[..., KillReport]  # kill_server(server_pid, *, pgid=None, timeout=...)
OnKill = Callable[[KillReport, KillEvent], None]

_CGROUP, _PID = 0, 1
_KEY_NAMES = {
    "cgroup_id": _CGROUP,
    "cgroup": _CGROUP,
    "flow.cgroup_id": _CGROUP,
    "call.cgroup_id": _CGROUP,
    "pid": _PID,
    "server_pid": _PID,
    "flow.pid": _PID,
    "call.server_pid": _PID,
}
_INF = float("inf")
_KILL = Action.KILL
_VERDICT = {a: a.value for a in Action}  # Enum.value is a property: 4x slower than this
INTERNAL_RULE = "<correlator>"


_FAST_ORDER = (
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "host",
    "protocol",
    "pid",
    "cgroup_id",
    "binary",
    "calls",
    "ts",
)


def _with_calls_positional(flow: FlowFacts, n: int) -> FlowFacts:
    # 2x faster than dataclasses.replace on a frozen slots class; used only while the
    # field order is the one spelled out above.
    return FlowFacts(
        flow.src_ip,
        flow.src_port,
        flow.dst_ip,
        flow.dst_port,
        flow.host,
        flow.protocol,
        flow.pid,
        flow.cgroup_id,
        flow.binary,
        n,
        flow.ts,
    )


def _with_calls_replace(flow: FlowFacts, n: int) -> FlowFacts:
    return replace(flow, calls=n)


_with_calls = (
    _with_calls_positional
    if tuple(f.name for f in fields(FlowFacts)) == _FAST_ORDER
    else _with_calls_replace
)


class _Session:
    __slots__ = ("cid", "server_pid", "cgroup_id", "pids", "start", "end", "until", "mask", "live")

    def __init__(
        self,
        cid: str,
        server_pid: int,
        cgroup_id: int,
        pids: tuple[int, ...],
        start: float,
        mask: int,
    ) -> None:
        self.cid = cid
        self.server_pid = server_pid
        self.cgroup_id = cgroup_id
        self.pids = pids
        self.start = start
        self.end = _INF
        self.until = _INF  # end + window: the last instant a flow can join
        self.mask = mask  # bit i set: the session knows key i of the spec
        self.live = True


@dataclass(slots=True)
class _Server:
    pid: int
    cgroup_id: int
    pgid: int | None


class _IsoClock:
    """epoch float -> `...T12:00:00.123456Z`, caching the per-second prefix (~0.4 µs)."""

    __slots__ = ("_sec", "_prefix")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def __call__(self, ts: float) -> str:
        sec = int(ts)
        if sec != self._sec:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
            self._sec = sec
        return f"{self._prefix}.{int((ts - sec) * 1e6):06d}Z"


class Correlator:
    """Joins flows to tool calls and executes flow verdicts (see the module docstring)."""

    def __init__(
        self,
        spec: JoinSpec,
        decide_flow: DecideFlow,
        emit: Emit,
        *,
        killer: Killer = kill_server,
        on_kill: OnKill | None = None,
        proctree: ProcTree | None = None,
        lateness_s: float = 1.0,
        max_call_s: float | None = None,
        kill_timeout_s: float = 2.0,
        max_skew_s: float = 1.0,
    ) -> None:
        keys: list[int] = []
        for k in spec.keys:
            code = _KEY_NAMES.get(k)
            if code is None:
                raise ValueError(f"unknown correlate key {k!r} (known: cgroup_id, pid)")
            if code not in keys:
                keys.append(code)
        if not keys:
            raise ValueError("a correlate block needs at least one key")
        if spec.window_s < 0:
            raise ValueError("correlate window must not be negative")
        self.spec = spec
        self.window_s = float(spec.window_s)
        self._keys = tuple(keys)
        self._key_bit = {code: 1 << i for i, code in enumerate(self._keys)}
        self._cgroup_then_pid = self._keys == (_CGROUP, _PID)
        self.decide_flow = decide_flow
        self.emit = emit
        self.killer = killer
        self.on_kill = on_kill
        self.proctree = proctree if proctree is not None else ProcTree()
        self.lateness_s = lateness_s
        self.max_call_s = max_call_s
        self.kill_timeout_s = kill_timeout_s
        self.max_skew_s = max_skew_s  # flow timestamps past now + this do not move expiry

        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._by_cgroup: dict[int, dict[str, _Session]] = {}
        self._by_pid: dict[int, dict[str, _Session]] = {}
        # The same, for sessions that know no cgroup id: a flow that knows one can only join
        # those by pid (the default spec's hot path looks here, not at every pid session).
        self._by_pid_nocg: dict[int, dict[str, _Session]] = {}
        self._lacking = [0] * len(self._keys)  # sessions that do not know key i
        self._heap: list[tuple[float, int, str, _Session]] = []
        self._seq = 0
        self._watermark = 0.0
        self._clamp = 0.0  # last wall-clock bound for the watermark
        self._servers: dict[int, _Server] = {}
        self._killed: dict[int, KillReport] = {}
        self._sources: list[FlowSource] = []
        self._iso = _IsoClock()
        self.flows = 0
        self.orphans = 0

    # -- the proxy's side ------------------------------------------------------------------
    def register_server(self, pid: int, *, cgroup_id: int = 0, pgid: int | None = None) -> None:
        """A server this correlator may kill: orphan flows from its tree (pid) or from its own
        cgroup are its. `pgid` defaults to the server's group at kill time."""
        with self._lock:
            self._servers[pid] = _Server(pid, cgroup_id, pgid)
            self._killed.pop(pid, None)

    def server_pids(self) -> list[int]:
        """The registered servers (the procfs source's default roots)."""
        with self._lock:
            return list(self._servers)

    def unregister_server(self, pid: int) -> None:
        with self._lock:
            self._servers.pop(pid, None)

    def open_call(
        self,
        correlation_id: str,
        ts: float | None = None,
        *,
        server_pid: int = 0,
        cgroup_id: int = 0,
        descendant_pids: Iterable[int] = (),
    ) -> None:
        """A tools/call was forwarded to the server: flows from now on may be its doing.

        `cgroup_id` should come from `proctree.session_cgroup_id(server_pid)` (0 when the
        server shares the proxy's cgroup, where it would explain every flow of the host)."""
        ts = time.time() if ts is None else ts
        pids = tuple(p for p in {server_pid, *descendant_pids} if p > 0)
        mask = 0
        for i, code in enumerate(self._keys):
            if cgroup_id if code == _CGROUP else pids:
                mask |= 1 << i
        s = _Session(correlation_id, server_pid, cgroup_id, pids, ts, mask)
        with self._lock:
            old = self._sessions.get(correlation_id)
            if old is not None:
                self._drop_locked(old)
            self._sessions[correlation_id] = s
            for i in range(len(self._keys)):
                if not mask & (1 << i):
                    self._lacking[i] += 1
            if cgroup_id and _CGROUP in self._key_bit:
                self._by_cgroup.setdefault(cgroup_id, {})[correlation_id] = s
            if _PID in self._key_bit:
                for p in pids:
                    self._by_pid.setdefault(p, {})[correlation_id] = s
                    if not cgroup_id:
                        self._by_pid_nocg.setdefault(p, {})[correlation_id] = s
            if self.max_call_s is not None:
                self._push_locked(ts + self.max_call_s + self.window_s + self.lateness_s, s)
            self._advance_locked(ts)

    def close_call(self, correlation_id: str, ts: float | None = None) -> None:
        """The call's response went back: its window now ends `window_s` after `ts`."""
        ts = time.time() if ts is None else ts
        with self._lock:
            s = self._sessions.get(correlation_id)
            if s is None or s.end != _INF:
                return
            s.end = max(ts, s.start)
            s.until = s.end + self.window_s
            self._push_locked(s.end + self.window_s + self.lateness_s, s)
            self._advance_locked(ts)

    @property
    def open_sessions(self) -> int:
        """Sessions a flow can still join: open calls, and closed ones not yet expired."""
        return len(self._sessions)

    # -- flows -----------------------------------------------------------------------------
    def join(self, flow: FlowFacts) -> list[str]:
        """The correlation ids a flow joins (no verdict, no event)."""
        with self._lock:
            return [s.cid for s in self._join_locked(flow)]

    def on_flow(self, flow: FlowFacts, source: str = "") -> list[str]:
        """Join, decide, emit (and kill on a `kill` verdict); returns the joined ids."""
        if not flow.ts:
            flow = replace(flow, ts=time.time())
        with self._lock:
            sessions = self._join_locked(flow)
        cids = [s.cid for s in sessions]
        orphan = not cids
        self.flows += 1
        if orphan:
            self.orphans += 1
        if flow.calls != len(cids):
            flow = _with_calls(flow, len(cids))
        try:
            decision = self.decide_flow(flow, orphan)
        except Exception as e:  # fail closed; a flow cannot be blocked, so deny == flagged
            log.exception("flow decision failed")
            decision = Decision(Action.DENY, INTERNAL_RULE, f"flow decision failed: {e!r}", "")
        ev = FlowEvent(
            ts=self._iso(flow.ts),
            src_ip=flow.src_ip,
            src_port=flow.src_port,
            dst_ip=flow.dst_ip,
            dst_port=flow.dst_port,
            protocol=flow.protocol,
            pid=flow.pid,
            cgroup_id=flow.cgroup_id,
            binary=flow.binary,
            source=source,
            correlation_ids=cids,
            orphan=orphan,
            verdict=_VERDICT[decision.action],
            rule=decision.rule,
            reason=decision.reason,
            policy_version=decision.policy_version,
        )
        self.emit(ev)
        if decision.action is _KILL:
            self._kill(flow, source, sessions, decision)
        return cids

    # -- sources ---------------------------------------------------------------------------
    def add_source(
        self,
        source: FlowSource | str,
        *,
        server_pid_getter: Callable[[], Any] | None = None,
        on_error: ErrorSink | None = None,
    ) -> FlowSource:
        """Start a flow source (an object, or a `--flow-source` spec) feeding `on_flow`."""
        if isinstance(source, str):
            getter = server_pid_getter or self.server_pids
            source = open_source(
                source, server_pid_getter=getter, on_error=on_error, proctree=self.proctree
            )
        self._sources.append(source)
        source.start(self.on_flow)
        return source

    def close(self, timeout: float = 2.0) -> None:
        """Stop every source this correlator started."""
        for src in self._sources:
            src.stop(timeout)
        self._sources.clear()

    # -- internals -------------------------------------------------------------------------
    def _join_locked(self, flow: FlowFacts) -> list[_Session]:
        ts = flow.ts
        if ts > self._watermark:
            # A producer's clock far ahead (or a forged line) must not expire live sessions:
            # the watermark stops at now + max_skew_s (the clock is read only past that).
            if ts > self._clamp:
                self._clamp = time.time() + self.max_skew_s
            wm = ts if ts <= self._clamp else self._clamp
            if wm > self._watermark:
                self._watermark = wm
                heap = self._heap
                if heap and heap[0][0] < wm:
                    self._advance_locked(wm)
        if self._cgroup_then_pid:
            return self._join_default(ts, flow.cgroup_id, flow.pid)
        return self._join_generic(ts, flow)

    def _join_default(self, ts: float, cg: int, pid: int) -> list[_Session]:
        """The default spec (cgroup id, then pid), unrolled: this is the hot path."""
        if cg:
            b = self._by_cgroup.get(cg)
            out = [s for s in b.values() if s.start <= ts <= s.until] if b else []
            nocg = self._by_pid_nocg
            if pid and nocg:  # sessions without a cgroup still go by pid
                b = nocg.get(pid) or self._pid_bucket(pid, nocg)
                if b:
                    out += [s for s in b.values() if s.start <= ts <= s.until]
            return out
        if pid:
            by_pid = self._by_pid
            b = by_pid.get(pid) or self._pid_bucket(pid, by_pid)
            if b:
                return [s for s in b.values() if s.start <= ts <= s.until]
        return []

    def _join_generic(self, ts: float, flow: FlowFacts) -> list[_Session]:
        keys = self._keys
        fmask = 0
        vals: list[int] = []
        for i, code in enumerate(keys):
            v = flow.cgroup_id if code == _CGROUP else flow.pid
            vals.append(v)
            if v:
                fmask |= 1 << i
        if not fmask:
            return []
        out: list[_Session] = []
        for i, code in enumerate(keys):
            v = vals[i]
            if not v:
                continue
            prior = fmask & ((1 << i) - 1)
            if prior:
                # Sessions that know an earlier key the flow knows were decided by it. If
                # every session knows it, nobody is left for this key.
                j, skip = 0, False
                while (1 << j) <= prior:
                    if prior & (1 << j) and not self._lacking[j]:
                        skip = True
                        break
                    j += 1
                if skip:
                    continue
            bucket = (
                self._by_cgroup.get(v) if code == _CGROUP else self._pid_bucket(v, self._by_pid)
            )
            if not bucket:
                continue
            for s in bucket.values():
                if prior and s.mask & prior:
                    continue
                if s.start <= ts <= s.until:
                    out.append(s)
        return out

    def _pid_bucket(
        self, pid: int, by_pid: dict[int, dict[str, _Session]]
    ) -> dict[str, _Session] | None:
        if not by_pid:
            return None
        bucket = by_pid.get(pid)
        if bucket:
            return bucket
        # A descendant: the nearest ancestor that is a session's pid decides.
        for anc in self.proctree.ancestors(pid):
            bucket = by_pid.get(anc)
            if bucket:
                return bucket
        return None

    def _push_locked(self, expiry: float, s: _Session) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (expiry, self._seq, s.cid, s))

    def _advance_locked(self, ts: float) -> None:
        if ts > self._watermark:
            self._watermark = ts
        heap = self._heap
        while heap and heap[0][0] < self._watermark:
            _exp, _seq, cid, s = heapq.heappop(heap)
            if s.live and self._sessions.get(cid) is s:
                self._drop_locked(s)

    def _drop_locked(self, s: _Session) -> None:
        s.live = False
        self._sessions.pop(s.cid, None)
        for i in range(len(self._keys)):
            if not s.mask & (1 << i):
                self._lacking[i] -= 1
        if s.cgroup_id:
            b = self._by_cgroup.get(s.cgroup_id)
            if b is not None and b.get(s.cid) is s:
                del b[s.cid]
                if not b:
                    del self._by_cgroup[s.cgroup_id]
        for index in (self._by_pid, self._by_pid_nocg):
            for p in s.pids:
                b = index.get(p)
                if b is not None and b.get(s.cid) is s:
                    del b[s.cid]
                    if not b:
                        del index[p]

    def _targets(self, flow: FlowFacts, sessions: list[_Session]) -> list[_Server]:
        """Which servers a kill verdict ends: the servers of the joined calls; for an orphan,
        the registered server whose tree or own cgroup the flow came from (never one the
        flow has nothing to do with)."""
        with self._lock:
            servers = dict(self._servers)
        if sessions:
            pids = sorted({s.server_pid for s in sessions if s.server_pid > 0})
            return [servers.get(p) or _Server(p, 0, None) for p in pids]
        out = []
        lineage = [flow.pid, *self.proctree.ancestors(flow.pid)] if flow.pid else []
        for srv in servers.values():
            if (srv.cgroup_id and srv.cgroup_id == flow.cgroup_id) or srv.pid in lineage:
                out.append(srv)
        return out

    def _kill(
        self, flow: FlowFacts, source: str, sessions: list[_Session], decision: Decision
    ) -> None:
        targets = self._targets(flow, sessions)
        if not targets:
            log.warning(
                "kill verdict (%s) for a flow from pid %d, which belongs to no known "
                "server: nothing to kill",
                decision.rule,
                flow.pid,
            )
            return
        flow_dict = {
            "ts": self._iso(flow.ts),
            "src_ip": flow.src_ip,
            "src_port": flow.src_port,
            "dst_ip": flow.dst_ip,
            "dst_port": flow.dst_port,
            "protocol": flow.protocol,
            "pid": flow.pid,
            "cgroup_id": flow.cgroup_id,
            "binary": flow.binary,
            "source": source,
        }
        cids = [s.cid for s in sessions]
        for srv in targets:
            with self._lock:
                prev = self._killed.get(srv.pid)
                if prev is not None and prev.dead:
                    continue  # a second flow of the same burst: dead or being killed
                # (a kill that left survivors is tried again by the next kill verdict)
                self._killed[srv.pid] = KillReport(srv.pid, 0, (), (), False, 0.0, "in progress")
            try:
                report = self.killer(srv.pid, pgid=srv.pgid, timeout=self.kill_timeout_s)
            except Exception as e:
                log.exception("kill of server %d failed", srv.pid)
                report = KillReport(srv.pid, 0, (), (srv.pid,), False, 0.0, repr(e))
            with self._lock:
                self._killed[srv.pid] = report
            ev = KillEvent(
                server_pid=srv.pid,
                rule=decision.rule,
                reason=decision.reason,
                flow=flow_dict,
                correlation_ids=cids,
                killed_pids=list(report.pids),
                survivors=list(report.survivors),
            )
            self.emit(ev)
            if self.on_kill is not None:
                try:
                    self.on_kill(report, ev)
                except Exception:
                    log.exception("on_kill callback failed")

    def kill_report(self, server_pid: int) -> KillReport | None:
        """The report of the kill of this server, if a flow verdict killed it."""
        with self._lock:
            return self._killed.get(server_pid)
