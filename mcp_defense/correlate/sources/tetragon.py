"""Tetragon flow source: Cilium Tetragon's JSON export (`tetragon:PATH`), for fleets that
already run it and so see every connect in the kernel, however short-lived.

Each export line is one `GetEventsResponse` in protojson: one event key plus `node_name`
and `time`. What this source reads:

- `process_kprobe` with `function_name == "tcp_connect"` (a TracingPolicy hooking
  tcp_connect with `args: [{index: 0, type: sock}]`): `args[0].sock_arg.{family, saddr,
  daddr, sport, dport, protocol}` and `process.{pid, binary}` make one flow;
- `process_exec` (`process`, `parent`): teaches the process tree who started whom, so a
  flow from a grandchild of the server still matches the server's pid key;
- `process_exit`: forgets the pid (pids are reused).

Other events and other kprobes are not flows and are skipped quietly; a line that is not
JSON, or a tcp_connect without a usable socket argument, is reported with its line number.
Tetragon's Process carries no cgroup id, so these flows join by pid.
"""

from __future__ import annotations

from typing import Any

from mcp_defense.correlate.proctree import ProcTree
from mcp_defense.correlate.sources import ErrorSink, FlowSink, FlowSource
from mcp_defense.correlate.sources.jsonl import (
    json_lines,
    parse_ip,
    parse_port,
    parse_protocol,
    parse_timestamp,
)
from mcp_defense.policy.facts import FlowFacts

CONNECT_FUNCTIONS = frozenset({"tcp_connect"})


def _pid(proc: Any, what: str) -> int:
    if not isinstance(proc, dict):
        raise ValueError(f"{what} is not an object")
    pid = proc.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"{what}.pid must be a positive integer, got {pid!r}")
    return pid


class TetragonSource(FlowSource):
    """Flows from Tetragon's JSON export (see the module docstring)."""

    def __init__(
        self,
        path: str,
        *,
        proctree: ProcTree | None = None,
        on_error: ErrorSink | None = None,
        follow: bool = True,
        poll_s: float = 0.05,
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"tetragon:{path}", on_error=on_error)
        self.path = path
        self.proctree = proctree
        self.follow = follow
        self.poll_s = poll_s
        self.skipped = 0  # well-formed events that are not flows

    def _run(self, sink: FlowSink) -> None:
        for lineno, obj in json_lines(self, self.path, self.follow, self.poll_s):
            try:
                flow = self.parse_event(obj)
            except ValueError as e:
                self._report(f"{self.path}:{lineno}: bad Tetragon event: {e}")
                continue
            if flow is None:
                self.skipped += 1
            else:
                self._deliver(sink, flow)

    def parse_event(self, obj: Any) -> FlowFacts | None:
        """One export object -> a flow, or None for events that are not flows."""
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        if "process_exec" in obj:
            ev = obj["process_exec"]
            if not isinstance(ev, dict):
                raise ValueError("process_exec is not an object")
            self._learn(ev)
            return None
        if "process_exit" in obj:
            ev = obj["process_exit"]
            if isinstance(ev, dict) and self.proctree is not None:
                proc = ev.get("process")
                if isinstance(proc, dict) and isinstance(proc.get("pid"), int):
                    self.proctree.forget(proc["pid"])
            return None
        ev = obj.get("process_kprobe")
        if ev is None:
            return None
        if not isinstance(ev, dict):
            raise ValueError("process_kprobe is not an object")
        if ev.get("function_name") not in CONNECT_FUNCTIONS:
            return None
        kproc = ev.get("process")
        pid = _pid(kproc, "process")  # raises unless it is an object with a pid
        assert isinstance(kproc, dict)
        self._learn(ev)
        args = ev.get("args")
        if not isinstance(args, list) or not args or not isinstance(args[0], dict):
            raise ValueError("tcp_connect without args[0]")
        sock = args[0].get("sock_arg")
        if not isinstance(sock, dict):
            raise ValueError(
                "tcp_connect args[0] has no sock_arg (the policy must hook it as type: sock)"
            )
        if "daddr" not in sock or "dport" not in sock:
            raise ValueError("sock_arg lacks daddr/dport")
        if "time" not in obj:
            raise ValueError("event has no time")
        family = sock.get("family", "")
        dst_ip = parse_ip(sock["daddr"], "sock_arg.daddr")
        if family == "AF_INET" and ":" in dst_ip:
            raise ValueError(f"sock_arg.family AF_INET with an IPv6 daddr {dst_ip}")
        binary = kproc.get("binary", "")
        return FlowFacts(
            src_ip=parse_ip(sock["saddr"], "sock_arg.saddr") if sock.get("saddr") else "",
            src_port=parse_port(sock.get("sport", 0), "sock_arg.sport"),
            dst_ip=dst_ip,
            dst_port=parse_port(sock["dport"], "sock_arg.dport"),
            protocol=parse_protocol(sock.get("protocol") or "tcp"),
            pid=pid,
            cgroup_id=0,
            binary=binary if isinstance(binary, str) else "",
            ts=parse_timestamp(obj["time"]),
        )

    def _learn(self, ev: dict[str, Any]) -> None:
        if self.proctree is None:
            return
        proc, parent = ev.get("process"), ev.get("parent")
        if isinstance(proc, dict) and isinstance(parent, dict):
            pid, ppid = proc.get("pid"), parent.get("pid")
            if isinstance(pid, int) and isinstance(ppid, int) and pid > 0 and ppid > 0:
                self.proctree.learn(pid, ppid)
