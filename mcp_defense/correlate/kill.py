"""The kill path: end a server and everything it started, and prove it is dead.

The proxy starts each server with `start_new_session=True`, so the server leads its own
process group and `killpg` reaches it and every child that stayed in the group at once. A
child that called setsid() or setpgid() has left the group, so the tree (and the session
the server leads) is also walked. To stop the tree from growing (or escaping) while it is
walked, the group is first frozen with SIGSTOP, then every member found outside it; a
stopped process cannot fork, exit or be replaced by a reused pid, so what is walked is what
gets killed. Death is verified through pidfds (no pid-reuse race) and never reaps: the
proxy owns its child's exit status (`Popen.wait`), and a zombie already counts as dead.
"""

from __future__ import annotations

import os
import select
import signal
import time
from dataclasses import dataclass

from mcp_defense.correlate import proctree


@dataclass(frozen=True, slots=True)
class KillReport:
    """What the kill path did, for the `kill` event and the proxy's exit."""

    server_pid: int
    pgid: int  # the group signalled, 0 when no group could be (ours, or none)
    pids: tuple[int, ...]  # every process that was alive and got SIGKILL
    survivors: tuple[int, ...]  # still alive when `timeout` ran out (empty: all dead)
    already_dead: bool  # nothing of the tree was alive to kill
    elapsed_s: float
    error: str = ""

    @property
    def dead(self) -> bool:
        return not self.survivors


def _signal(pid: int, sig: int, pidfd: int | None = None) -> bool:
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError, OSError):
        return False


def _members(server_pid: int, pgid: int, never: set[int]) -> dict[int, proctree.ProcStat]:
    """Live processes of the server's tree, group or session, from one /proc pass."""
    stats = proctree.scan()
    tree = proctree.descendants([server_pid], stats)
    if pgid > 1:
        tree.update(pid for pid, st in stats.items() if st.pgid == pgid)
    if server_pid != os.getsid(0):
        # The session the server leads: children orphaned on purpose keep it (only setsid
        # leaves it). Never our own session, which would take the user's terminal with it.
        tree.update(pid for pid, st in stats.items() if st.sid == server_pid)
    return {
        pid: stats[pid] for pid in tree if pid not in never and stats[pid].state not in ("Z", "X")
    }


def kill_server(server_pid: int, *, pgid: int | None = None, timeout: float = 2.0) -> KillReport:
    """SIGKILL the server's process group and any descendant outside it; wait for death.

    `pgid` defaults to the server's current group (or, if the server is already gone, its
    pid: with `start_new_session=True` the two are equal). Our own group, pid 1 and our own
    pid are never signalled, so a server started without its own session cannot take the
    proxy down with it. Tolerates processes that are already dead or vanish meanwhile.
    """
    t0 = time.monotonic()
    never = {0, 1, os.getpid()}
    st = proctree.read_stat(server_pid)
    if pgid is None:
        pgid = st.pgid if st is not None else server_pid
    group = pgid if pgid > 1 and pgid != os.getpgrp() else 0

    # 1. freeze: the group at once, then members outside it, until the walk finds no one new.
    if group:
        try:
            os.killpg(group, signal.SIGSTOP)
        except (ProcessLookupError, PermissionError):
            pass
    stopped: set[int] = set()
    members: dict[int, proctree.ProcStat] = {}
    for _ in range(8):
        members = _members(server_pid, group, never)
        fresh = [p for p, s in members.items() if p not in stopped and s.pgid != group]
        if not fresh:
            break
        for pid in fresh:
            _signal(pid, signal.SIGSTOP)
            stopped.add(pid)

    if not members:
        return KillReport(server_pid, group, (), (), True, time.monotonic() - t0)

    # 2. pidfds for verification (stopped processes cannot exit, so no pid was reused).
    pidfds: dict[int, int | None] = {}
    for pid in members:
        try:
            pidfds[pid] = os.pidfd_open(pid)
        except (OSError, AttributeError):
            pidfds[pid] = None

    # 3. kill: the group in one call, then every member the group signal does not reach.
    try:
        if group:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid, s in members.items():
            if s.pgid != group:
                _signal(pid, signal.SIGKILL, pidfds[pid])
        survivors = _wait_dead(pidfds, t0 + timeout)
    finally:
        for fd in pidfds.values():
            if fd is not None:
                os.close(fd)
    return KillReport(
        server_pid,
        group,
        tuple(sorted(members)),
        tuple(sorted(survivors)),
        False,
        time.monotonic() - t0,
    )


def _wait_dead(pidfds: dict[int, int | None], deadline: float) -> list[int]:
    """Wait until every process has exited (a pidfd turns readable; without one, /proc shows
    a zombie or nothing). Returns those still alive at the deadline."""
    pending = dict(pidfds)
    poller = select.poll()
    by_fd: dict[int, int] = {}
    for pid, fd in pending.items():
        if fd is not None:
            poller.register(fd, select.POLLIN)
            by_fd[fd] = pid
    while pending:
        for pid in [p for p, fd in pending.items() if fd is None]:
            if not proctree.is_alive(pid):
                del pending[pid]
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            break
        wait_ms = min(left * 1000, 5 if any(fd is None for fd in pending.values()) else 100)
        if by_fd:
            for fd, _ev in poller.poll(max(wait_ms, 0)):
                pid = by_fd.pop(fd)
                poller.unregister(fd)
                pending.pop(pid, None)
        else:
            time.sleep(wait_ms / 1000)
    return list(pending)
