"""procfs flow source: the server's own connections, seen from /proc, with no privileges.

Every `interval_s` (20 ms by default; `procfs:50ms` to change it) the source:

1. finds the tree: the server pid(s) from `roots_getter` and every descendant, by the ppid
   column of `/proc/<pid>/stat` (only pids new since the last poll are read). A process in
   the session a root leads (the proxy starts servers with `start_new_session=True`) is a
   member too, so a child orphaned on purpose (reparented to init before we saw it) is
   still found; only setsid() leaves the session. Membership is sticky: a member whose
   parent exits stays watched until it exits itself;
2. lists each member's socket inodes (`readlink /proc/<pid>/fd/N` -> `socket:[inode]`);
3. only if some inode is new, looks it up in `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` of that
   network namespace (hex addresses in host byte order, hex ports, state column) and emits
   one flow per new connection: a TCP socket with a remote end in any state but LISTEN
   (SYN_SENT and ESTABLISHED, but also a connection already half-closed by the time it is
   seen), or a connected UDP socket. Accepted (inbound) connections -- whose local port is
   a listening one -- and unix/netlink sockets are not flows.

The tables are read only for new inodes because reading /proc/net/tcp walks the kernel's
whole TCP hash (milliseconds on a large machine), while listing fds costs microseconds.
An inode not found anywhere yet (socket() before connect(), an unbound UDP socket) is looked
at again with backoff, up to `recheck_max_s`.

Limits, by design of /proc: a connection opened and closed within one interval is not
seen (Tetragon sees those); unconnected UDP `sendto` has no remote end to see. The flow's
`ts` is when the member's fds were listed: an upper bound of connect() time, at most one
interval late.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import struct
import time
from collections.abc import Callable, Iterable

from mcp_defense.correlate import proctree as pt
from mcp_defense.correlate.sources import ErrorSink, FlowSink, FlowSource
from mcp_defense.policy.facts import FlowFacts

log = logging.getLogger("mcp_defense.correlate.sources.procfs")

DEFAULT_INTERVAL_S = 0.02
TCP_LISTEN = 0x0A
INET_TABLES = ("tcp", "tcp6", "udp", "udp6")
_REPORTED, _IGNORED = 1, 2


def decode_addr(hexaddr: str) -> str:
    """`0100007F` -> 127.0.0.1; 32 hex digits -> IPv6 (IPv4-mapped ones as IPv4).

    The kernel prints each 32-bit word of the address as a host-order integer, so packing the
    words back in native order restores the network-order bytes on any endianness."""
    if len(hexaddr) == 8:
        return str(ipaddress.IPv4Address(struct.pack("=I", int(hexaddr, 16))))
    raw = b"".join(struct.pack("=I", int(hexaddr[i : i + 8], 16)) for i in range(0, 32, 8))
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def _is_zero(hexaddr: str) -> bool:
    return hexaddr.strip("0") == ""


class ProcfsSource(FlowSource):
    """Polls the process tree under `roots_getter()` (see the module docstring)."""

    def __init__(
        self,
        roots_getter: Callable[[], Iterable[int]],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        proctree: pt.ProcTree | None = None,
        on_error: ErrorSink | None = None,
        recheck_max_s: float = 1.0,
        name: str = "procfs",
    ) -> None:
        super().__init__(name, on_error=on_error)
        self.roots_getter = roots_getter
        self.interval_s = interval_s
        self.proctree = proctree
        self.recheck_max_s = recheck_max_s
        self.scans = 0
        self._stats: dict[int, tuple[int, int]] = {}  # pid -> (ppid, sid), all of /proc
        self._members: set[int] = set()
        self._snapshot: frozenset[int] = frozenset()  # published after each scan
        self._last_error = ""
        self._parent: dict[int, int] = {}  # member -> logical parent (a member, or a root's ppid)
        self._roots: tuple[int, ...] = ()
        self._done: dict[int, int] = {}  # inode -> _REPORTED | _IGNORED
        self._pending: dict[
            int, tuple[float, float, str | None]
        ] = {}  # inode -> (due, backoff, table)
        self._roots_failed = False

    @property
    def members(self) -> frozenset[int]:
        """The pids watched after the last scan (for tests and the kill path)."""
        return self._snapshot

    def _run(self, sink: FlowSink) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.scan_once(sink)
                self._last_error = ""
            except Exception as e:  # keep watching: one odd /proc read must not blind us
                msg = f"procfs: scan failed: {e!r}"
                if msg != self._last_error:  # once per distinct failure, not every poll
                    log.exception("procfs scan failed")
                    self._report(msg)
                    self._last_error = msg
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))

    # -- one poll ---------------------------------------------------------------------------
    def scan_once(self, sink: FlowSink) -> None:
        self.scans += 1
        self._update_tree(self._get_roots())
        self._snapshot = frozenset(self._members)
        found: dict[int, tuple[int, float]] = {}  # inode -> (pid, ts)
        for pid in sorted(self._members):
            ts = time.time()
            for ino in self._socket_inodes(pid):
                found.setdefault(ino, (pid, ts))
        # Sockets that were closed: forget them (inode numbers are not reused soon).
        for table in (self._done, self._pending):
            for ino in [i for i in table if i not in found]:
                del table[ino]
        now = time.monotonic()
        cands = {
            ino: v
            for ino, v in found.items()
            if ino not in self._done and (ino not in self._pending or self._pending[ino][0] <= now)
        }
        if cands:
            self._resolve(cands, sink, now)

    def _get_roots(self) -> tuple[int, ...]:
        try:
            roots = tuple(sorted({int(p) for p in self.roots_getter() if p and int(p) > 0}))
            self._roots_failed = False
            return roots
        except Exception as e:
            if not self._roots_failed:
                self._report(f"procfs: cannot get the server pid: {e!r}")
                self._roots_failed = True
            return self._roots

    def _update_tree(self, roots: tuple[int, ...]) -> None:
        stats, members, parent = self._stats, self._members, self._parent
        now_pids = set(pt.list_pids())
        for pid in [p for p in stats if p not in now_pids]:
            del stats[pid]
            if pid in members:
                self._leave(pid)
        new: list[int] = []
        for pid in sorted(now_pids):
            if pid not in stats:
                st = pt.read_stat(pid)
                if st is not None:
                    stats[pid] = (st.ppid, st.sid)
                    new.append(pid)
        if roots != self._roots:
            self._roots = roots
            candidates = sorted(stats)  # a new root: its existing descendants count too
        else:
            candidates = new
        added = [r for r in roots if r in stats and r not in members]
        members.update(added)
        for r in added:
            parent[r] = stats[r][0]
        # Sessions led by a root (sid == root pid); a root in someone else's session (a
        # server started without its own) must not pull that whole session in.
        sessions = {r for r in roots if r in stats and stats[r][1] == r}
        remaining = [p for p in candidates if p not in members]
        changed = True
        while changed and remaining:
            changed = False
            rest = []
            for pid in remaining:
                ppid, sid = stats[pid]
                if ppid in members or sid in sessions:
                    members.add(pid)
                    added.append(pid)
                    # An orphan found by its session hangs under the session's leader, so
                    # the correlator's pid key still leads it to the server.
                    parent[pid] = ppid if ppid in members else sid
                    changed = True
                else:
                    rest.append(pid)
            remaining = rest
        if self.proctree is not None:
            for pid in added:
                self.proctree.learn(pid, parent[pid])

    def _leave(self, pid: int) -> None:
        """A member exited: its children now hang under its own parent, so the chain from a
        grandchild up to the server is never cut by an intermediate process exiting."""
        self._members.discard(pid)
        up = self._parent.pop(pid, 0)
        for child, par in list(self._parent.items()):
            if par == pid:
                self._parent[child] = up
                if self.proctree is not None:
                    self.proctree.learn(child, up)
        if self.proctree is not None:
            self.proctree.forget(pid)

    @staticmethod
    def _socket_inodes(pid: int) -> list[int]:
        base = f"{pt.PROC}/{pid}/fd"
        try:
            names = os.listdir(base)
        except OSError:  # gone, or not ours to read
            return []
        out = []
        for n in names:
            try:
                link = os.readlink(f"{base}/{n}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.append(int(link[8:-1]))
        return out

    # -- inode -> connection ----------------------------------------------------------------
    def _resolve(self, cands: dict[int, tuple[int, float]], sink: FlowSink, now: float) -> None:
        by_ns: dict[str, dict[int, tuple[int, float]]] = {}
        for ino, (pid, ts) in cands.items():
            try:
                ns = os.readlink(f"{pt.PROC}/{pid}/ns/net")
            except OSError:
                ns = f"pid:{pid}"
            by_ns.setdefault(ns, {})[ino] = (pid, ts)
        for group in by_ns.values():
            self._resolve_ns(group, sink, now)

    def _resolve_ns(self, left: dict[int, tuple[int, float]], sink: FlowSink, now: float) -> None:
        reader = next(iter(left.values()))[0]  # any member in this netns reads its tables
        tables: set[str] = set()
        for ino in left:
            known = self._pending.get(ino)
            if known is None or known[2] is None:
                tables = set(INET_TABLES)
                break
            tables.add(known[2])
        if len(tables) == len(INET_TABLES):
            # Cheap tables first: unix and netlink sockets are never flows.
            for table in ("unix", "netlink"):
                for ino in self._inode_column(reader, table, left):
                    self._done[ino] = _IGNORED
                    del left[ino]
                if not left:
                    return
        for table in INET_TABLES:
            if table in tables and left:
                self._scan_table(reader, table, left, sink)
        for ino in left:  # not found anywhere: look again later, with backoff
            _due, backoff, known_table = self._pending.get(ino, (0.0, 0.0, None))
            backoff = min(max(backoff * 2, self.interval_s * 2), self.recheck_max_s)
            self._pending[ino] = (now + backoff, backoff, known_table)

    @staticmethod
    def _read(pid: int, table: str) -> list[str]:
        try:
            with open(f"{pt.PROC}/{pid}/net/{table}", encoding="ascii", errors="replace") as f:
                return f.read().splitlines()[1:]
        except OSError:
            return []

    def _inode_column(
        self, pid: int, table: str, wanted: dict[int, tuple[int, float]]
    ) -> list[int]:
        col = 6 if table == "unix" else 9  # unix: Num RefCount Protocol Flags Type St Inode;
        # netlink: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
        hits = []
        for line in self._read(pid, table):
            parts = line.split()
            if len(parts) > col and parts[col].isdigit() and int(parts[col]) in wanted:
                hits.append(int(parts[col]))
        return hits

    def _scan_table(
        self, pid: int, table: str, left: dict[int, tuple[int, float]], sink: FlowSink
    ) -> None:
        tcp = table.startswith("tcp")
        listening: set[tuple[str, int]] = set()
        hits: list[tuple[int, str, str, int]] = []
        for line in self._read(pid, table):
            parts = line.split()
            if len(parts) < 10:
                continue
            state = int(parts[3], 16)
            if tcp and state == TCP_LISTEN:
                addr, _, port = parts[1].partition(":")
                listening.add((addr, int(port, 16)))
            ino = int(parts[9]) if parts[9].isdigit() else 0
            if ino in left:
                hits.append((ino, parts[1], parts[2], state))
        for ino, local, remote, state in hits:
            pid_ts = left.pop(ino)
            laddr, _, lport_hex = local.partition(":")
            raddr, _, rport_hex = remote.partition(":")
            lport, rport = int(lport_hex, 16), int(rport_hex, 16)
            if tcp and state == TCP_LISTEN:
                self._done[ino] = _IGNORED
            elif rport == 0 or _is_zero(raddr):
                # Unconnected (bound UDP, or TCP before connect): look again later.
                due, backoff, _t = self._pending.get(ino, (0.0, 0.0, None))
                backoff = min(max(backoff * 2, self.interval_s * 2), self.recheck_max_s)
                self._pending[ino] = (time.monotonic() + backoff, backoff, table)
            elif tcp and (
                (laddr, lport) in listening or any(p == lport and _is_zero(a) for a, p in listening)
            ):
                self._done[ino] = _IGNORED  # accepted: someone connected to the server
            else:
                self._done[ino] = _REPORTED
                self._pending.pop(ino, None)
                self._emit(sink, pid_ts, table, laddr, lport, raddr, rport)

    def _emit(
        self,
        sink: FlowSink,
        pid_ts: tuple[int, float],
        table: str,
        laddr: str,
        lport: int,
        raddr: str,
        rport: int,
    ) -> None:
        pid, ts = pid_ts
        try:
            binary = os.readlink(f"{pt.PROC}/{pid}/exe")
        except OSError:
            binary = ""
        flow = FlowFacts(
            src_ip=decode_addr(laddr),
            src_port=lport,
            dst_ip=decode_addr(raddr),
            dst_port=rport,
            protocol="tcp" if table.startswith("tcp") else "udp",
            pid=pid,
            cgroup_id=pt.cgroup_id(pid),
            binary=binary,
            ts=ts,
        )
        self._deliver(sink, flow)
