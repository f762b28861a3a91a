"""Process-tree facts read from /proc, without privileges.

The correlator's pid key asks "is this pid the server or one of its descendants?", the
procfs flow source must find the server's descendants, and the kill path must find every
process of the tree, including those that left the server's process group. All three read
the same few files here. `/proc/<pid>/task/*/children` needs CONFIG_PROC_CHILDREN, which not
every kernel has, so the tree is built from the ppid column of `/proc/<pid>/stat`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import NamedTuple

PROC = "/proc"


class ProcStat(NamedTuple):
    pid: int
    ppid: int
    pgid: int
    sid: int  # session id: kept by a child that is orphaned, lost only by calling setsid()
    state: str  # R, S, D, T, Z, X...
    starttime: int  # clock ticks after boot: with pid, names one process across pid reuse


def read_stat(pid: int) -> ProcStat | None:
    """`/proc/<pid>/stat`, or None if the process is gone (or was never there)."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: the fields resume after the last ')'.
    r = data.rfind(b")")
    parts = data[r + 2 :].split()
    try:
        return ProcStat(
            pid,
            int(parts[1]),
            int(parts[2]),
            int(parts[3]),
            parts[0].decode("ascii", "replace"),
            int(parts[19]),
        )
    except (IndexError, ValueError):
        return None


def list_pids() -> list[int]:
    """Every process (thread-group leader) visible in /proc."""
    return [int(n) for n in os.listdir(PROC) if n.isdigit()]


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie is dead, only unreaped)."""
    st = read_stat(pid)
    return st is not None and st.state not in ("Z", "X")


def scan() -> dict[int, ProcStat]:
    """One full pass over /proc: pid -> stat, for processes that did not vanish meanwhile."""
    out: dict[int, ProcStat] = {}
    for pid in list_pids():
        st = read_stat(pid)
        if st is not None:
            out[pid] = st
    return out


def descendants(roots: Iterable[int], stats: dict[int, ProcStat] | None = None) -> set[int]:
    """The roots that exist plus all their descendants, from one consistent /proc pass."""
    stats = scan() if stats is None else stats
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    out: set[int] = set()
    todo = [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo.extend(children.get(pid, ()))
    return out


# -- cgroup v2 ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def cgroup2_mount() -> str:
    """Where the unified (v2) hierarchy is mounted: /sys/fs/cgroup, or .../unified on hybrid
    hosts. Empty when there is none (pure v1), so cgroup ids are then 0 (unknown)."""
    try:
        with open(f"{PROC}/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        pass
    return ""


def cgroup_path(pid: int) -> str | None:
    """The v2 path from `/proc/<pid>/cgroup` (the `0::/path` line), or None."""
    try:
        with open(f"{PROC}/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n")
    except OSError:
        return None
    return None


def cgroup_id(pid: int) -> int:
    """cgroup v2 id of a process (the inode of its cgroup directory, the same number BPF's
    bpf_get_current_cgroup_id returns); 0 when it cannot be known."""
    mount = cgroup2_mount()
    path = cgroup_path(pid)
    if not mount or path is None:
        return 0
    try:
        return os.stat(mount + path.rstrip("/") if path != "/" else mount).st_ino
    except OSError:
        return 0


def session_cgroup_id(server_pid: int) -> int:
    """The cgroup id worth joining on for a server, or 0.

    A cgroup the server shares with the proxy itself (a desktop session scope, a container,
    the root cgroup) says nothing about which process made a flow: joining on it would
    explain every flow of every process in it. Only a cgroup of its own (systemd-run
    --scope, a container per server) is a key; otherwise the pid key decides.
    """
    cid = cgroup_id(server_pid)
    if cid == 0 or cid == cgroup_id(os.getpid()):
        return 0
    return cid


# -- the correlator's view of ancestry ---------------------------------------------------


class ProcTree:
    """pid -> parent pid, learned from flow sources and, for pids no source told about,
    read live from /proc (cached for `ttl_s`, since pids are reused).

    The procfs source teaches it every member of the server tree on each scan, and the
    Tetragon source teaches it from `process_exec` events; the live read covers JSONL flows
    whose producer knows only the pid. `live=False` when flows come from another host or
    pid namespace, where the local /proc would name other processes.
    """

    def __init__(
        self,
        *,
        live: bool = True,
        ttl_s: float = 2.0,
        max_depth: int = 64,
        max_entries: int = 65536,
    ) -> None:
        self.live = live
        self.ttl_s = ttl_s
        self.max_depth = max_depth
        self.max_entries = max_entries
        self._known: dict[int, int] = {}
        self._cached: dict[int, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def learn(self, pid: int, ppid: int) -> None:
        if pid <= 0 or pid == ppid:
            return
        known = self._known
        if known.get(pid) != ppid:
            with self._lock:
                if len(known) >= self.max_entries:
                    for k in list(known)[: self.max_entries // 2]:
                        known.pop(k, None)
                known[pid] = ppid

    def forget(self, pid: int) -> None:
        self._known.pop(pid, None)
        self._cached.pop(pid, None)

    def parent(self, pid: int) -> int:
        """Parent pid, or 0 when unknown (which ends any walk up the tree)."""
        ppid = self._known.get(pid)
        if ppid is not None:
            return ppid
        if not self.live:
            return 0
        now = time.monotonic()
        hit = self._cached.get(pid)
        if hit is not None and now - hit[1] < self.ttl_s:
            return hit[0]
        st = read_stat(pid)
        ppid = st.ppid if st is not None else 0
        if len(self._cached) >= self.max_entries:
            self._cached.clear()
        self._cached[pid] = (ppid, now)
        return ppid

    def ancestors(self, pid: int) -> Iterator[int]:
        """Parent, grandparent, ... up to (and including) pid 1, at most `max_depth` steps."""
        seen = 0
        p = self.parent(pid)
        while p > 0 and seen < self.max_depth:
            yield p
            if p == 1:
                return
            seen += 1
            p = self.parent(p)

    def is_in_tree(self, pid: int, root: int) -> bool:
        return pid == root or any(a == root for a in self.ancestors(pid))
