"""Correlator unit tests: join keys, windows, orphans, expiry, verdicts and the kill hook."""

from __future__ import annotations

import pytest

from mcp_defense.correlate.correlator import INTERNAL_RULE, Correlator
from mcp_defense.correlate.kill import KillReport
from mcp_defense.correlate.proctree import ProcTree
from mcp_defense.events.model import FlowEvent, KillEvent, event_from_dict
from mcp_defense.policy.facts import Action, Decision, FlowFacts, JoinSpec

ALLOW = Decision(Action.ALLOW, "", "default", "v1")


class Harness:
    def __init__(self, spec: JoinSpec | None = None, verdict: Action = Action.ALLOW, **kw) -> None:
        self.events: list = []
        self.decided: list[tuple[FlowFacts, bool]] = []
        self.kills: list[tuple[int, int | None]] = []
        self.verdict = verdict
        kw.setdefault("proctree", ProcTree(live=False))
        self.c = Correlator(
            spec or JoinSpec(), self.decide, self.events.append, killer=self.killer, **kw
        )

    def decide(self, flow: FlowFacts, orphan: bool) -> Decision:
        self.decided.append((flow, orphan))
        return Decision(self.verdict, "r1", "because", "v1")

    def killer(self, pid: int, *, pgid: int | None = None, timeout: float = 2.0) -> KillReport:
        self.kills.append((pid, pgid))
        return KillReport(pid, pid, (pid,), (), False, 0.001)

    def flows(self) -> list[FlowEvent]:
        return [e for e in self.events if isinstance(e, FlowEvent)]


def flow(ts: float, pid: int = 0, cgroup: int = 0, **kw) -> FlowFacts:
    return FlowFacts(dst_ip="203.0.113.9", dst_port=443, pid=pid, cgroup_id=cgroup, ts=ts, **kw)


# -- windows ------------------------------------------------------------------------------


def test_window_covers_call_start_to_end_plus_window():
    h = Harness(JoinSpec(window_s=5.0))
    h.c.open_call("c1", 100.0, server_pid=10)
    h.c.close_call("c1", 110.0)
    assert h.c.join(flow(99.999, pid=10)) == []
    assert h.c.join(flow(100.0, pid=10)) == ["c1"]
    assert h.c.join(flow(110.0, pid=10)) == ["c1"]
    assert h.c.join(flow(115.0, pid=10)) == ["c1"]
    assert h.c.join(flow(115.001, pid=10)) == []


def test_open_call_covers_everything_after_its_start():
    h = Harness(JoinSpec(window_s=0.0))
    h.c.open_call("c1", 100.0, server_pid=10)
    assert h.c.join(flow(10_000.0, pid=10)) == ["c1"]
    assert h.c.join(flow(99.0, pid=10)) == []


def test_zero_window_ends_at_call_end():
    h = Harness(JoinSpec(window_s=0.0))
    h.c.open_call("c1", 100.0, server_pid=10)
    h.c.close_call("c1", 101.0)
    assert h.c.join(flow(101.0, pid=10)) == ["c1"]
    assert h.c.join(flow(101.0001, pid=10)) == []


def test_flow_joins_every_overlapping_call():
    h = Harness()
    h.c.open_call("a", 100.0, server_pid=10)
    h.c.open_call("b", 101.0, server_pid=10)
    h.c.open_call("other", 100.0, server_pid=20)
    assert sorted(h.c.join(flow(102.0, pid=10))) == ["a", "b"]
    h.c.on_flow(flow(102.0, pid=10))
    assert h.decided[-1][0].calls == 2 and h.decided[-1][1] is False


# -- keys ---------------------------------------------------------------------------------


def test_cgroup_decides_when_both_sides_know_it():
    h = Harness()
    h.c.open_call("c1", 100.0, server_pid=10, cgroup_id=7)
    assert h.c.join(flow(101.0, pid=10, cgroup=7)) == ["c1"]
    # Same pid, another cgroup: the cgroup key decided, the pid is not consulted.
    assert h.c.join(flow(101.0, pid=10, cgroup=8)) == []
    # Any pid in the server's own cgroup is the server's.
    assert h.c.join(flow(101.0, pid=999, cgroup=7)) == ["c1"]


def test_pid_fallback_when_one_side_lacks_cgroup():
    h = Harness()
    h.c.open_call("known", 100.0, server_pid=10, cgroup_id=7)
    h.c.open_call("pid-only", 100.0, server_pid=10)
    # Flow without cgroup: both sessions are compared on pid.
    assert sorted(h.c.join(flow(101.0, pid=10))) == ["known", "pid-only"]
    # Flow with another cgroup: "known" is decided by cgroup (no), "pid-only" by pid (yes).
    assert h.c.join(flow(101.0, pid=10, cgroup=8)) == ["pid-only"]


def test_key_order_is_the_spec_order():
    h = Harness(JoinSpec(keys=("pid", "cgroup_id")))
    h.c.open_call("c1", 100.0, server_pid=10, cgroup_id=7)
    # pid first: both know a pid, and it differs -> the shared cgroup does not matter.
    assert h.c.join(flow(101.0, pid=11, cgroup=7)) == []
    assert h.c.join(flow(101.0, pid=10, cgroup=8)) == ["c1"]
    # The flow knows no pid: the cgroup is the first key both know.
    assert h.c.join(flow(101.0, pid=0, cgroup=7)) == ["c1"]


def test_single_key_spec_ignores_the_other_key():
    h = Harness(JoinSpec(keys=("cgroup_id",)))
    h.c.open_call("c1", 100.0, server_pid=10, cgroup_id=7)
    assert h.c.join(flow(101.0, pid=10)) == []
    assert h.c.join(flow(101.0, pid=55, cgroup=7)) == ["c1"]


def test_flow_knowing_no_key_is_an_orphan():
    h = Harness()
    h.c.open_call("c1", 100.0, server_pid=10, cgroup_id=7)
    assert h.c.join(flow(101.0)) == []


def test_descendants_match_the_server_pid():
    tree = ProcTree(live=False)
    tree.learn(11, 10)
    tree.learn(12, 11)
    tree.learn(30, 1)
    h = Harness(proctree=tree)
    h.c.open_call("c1", 100.0, server_pid=10)
    assert h.c.join(flow(101.0, pid=12)) == ["c1"]
    assert h.c.join(flow(101.0, pid=11)) == ["c1"]
    assert h.c.join(flow(101.0, pid=30)) == []
    assert h.c.join(flow(101.0, pid=1)) == []


def test_descendant_pids_given_with_the_call():
    h = Harness()
    h.c.open_call("c1", 100.0, server_pid=10, descendant_pids=[44, 45])
    assert h.c.join(flow(101.0, pid=45)) == ["c1"]


def test_aliases_and_unknown_keys():
    Correlator(JoinSpec(keys=("flow.cgroup_id", "call.server_pid")), lambda f, o: ALLOW, print)
    with pytest.raises(ValueError, match="unknown correlate key"):
        Correlator(JoinSpec(keys=("uid",)), lambda f, o: ALLOW, print)
    with pytest.raises(ValueError):
        Correlator(JoinSpec(keys=()), lambda f, o: ALLOW, print)
    with pytest.raises(ValueError):
        Correlator(JoinSpec(window_s=-1), lambda f, o: ALLOW, print)


# -- orphans and events -------------------------------------------------------------------


def test_orphan_flow_event_and_decision():
    h = Harness(verdict=Action.ALERT)
    h.c.open_call("c1", 100.0, server_pid=10)
    assert h.c.on_flow(flow(101.0, pid=77, binary="/usr/bin/curl"), "procfs") == []
    (ev,) = h.flows()
    assert ev.orphan and ev.correlation_ids == [] and ev.verdict == "alert"
    assert ev.source == "procfs" and ev.pid == 77 and ev.binary == "/usr/bin/curl"
    assert h.decided[-1][1] is True and h.decided[-1][0].calls == 0
    assert h.c.orphans == 1
    # The event round-trips through the one event family.
    again = event_from_dict(ev.to_dict())
    assert again == ev


def test_joined_flow_event_carries_ids_and_verdict():
    h = Harness()
    h.c.open_call("c1", 100.0, server_pid=10)
    h.c.on_flow(flow(1_777_032_000.25, pid=10))
    (ev,) = h.flows()
    assert ev.correlation_ids == ["c1"] and not ev.orphan
    assert (ev.verdict, ev.rule, ev.reason, ev.policy_version) == ("allow", "r1", "because", "v1")
    assert ev.ts == "2026-04-24T12:00:00.250000Z"


def test_decision_error_fails_closed():
    events: list = []

    def broken(flow: FlowFacts, orphan: bool) -> Decision:
        raise RuntimeError("boom")

    c = Correlator(JoinSpec(), broken, events.append, proctree=ProcTree(live=False))
    c.on_flow(flow(1.0, pid=3))
    (ev,) = events
    assert ev.verdict == "deny" and ev.rule == INTERNAL_RULE and "boom" in ev.reason


def test_flow_without_timestamp_gets_now():
    h = Harness()
    h.c.open_call("c1", None, server_pid=10)
    assert h.c.on_flow(flow(0.0, pid=10)) == ["c1"]


# -- expiry -------------------------------------------------------------------------------


def test_closed_sessions_expire_lazily():
    h = Harness(JoinSpec(window_s=5.0), lateness_s=1.0)
    for i in range(100):
        h.c.open_call(f"c{i}", 100.0, server_pid=1000 + i, cgroup_id=5000 + i)
        h.c.close_call(f"c{i}", 101.0)
    h.c.open_call("still-open", 100.0, server_pid=10)
    assert h.c.open_sessions == 101
    # Within window + lateness nothing is dropped...
    h.c.join(flow(106.5, pid=3))
    assert h.c.open_sessions == 101
    # ...past it, every closed session goes, indexes included; the open call stays.
    h.c.join(flow(107.5, pid=3))
    assert h.c.open_sessions == 1
    assert set(h.c._by_pid) == {10} and h.c._by_cgroup == {}
    assert h.c.join(flow(107.6, pid=10)) == ["still-open"]


def test_max_call_expires_calls_never_closed():
    h = Harness(JoinSpec(window_s=1.0), lateness_s=0.0, max_call_s=10.0)
    h.c.open_call("forgotten", 100.0, server_pid=10)
    assert h.c.join(flow(105.0, pid=10)) == ["forgotten"]
    h.c.join(flow(111.5, pid=3))
    assert h.c.open_sessions == 0


def test_reopening_an_id_replaces_the_session():
    h = Harness()
    h.c.open_call("c1", 100.0, server_pid=10)
    h.c.open_call("c1", 100.0, server_pid=20)
    assert h.c.open_sessions == 1
    assert h.c.join(flow(101.0, pid=10)) == []
    assert h.c.join(flow(101.0, pid=20)) == ["c1"]


def test_close_is_idempotent_and_ignores_unknown_ids():
    h = Harness(JoinSpec(window_s=1.0))
    h.c.open_call("c1", 100.0, server_pid=10)
    h.c.close_call("c1", 101.0)
    h.c.close_call("c1", 500.0)  # a second close must not stretch the window
    h.c.close_call("nope", 101.0)
    assert h.c.join(flow(102.5, pid=10)) == []


# -- kill verdicts ------------------------------------------------------------------------


def test_kill_verdict_kills_the_joined_server_once():
    h = Harness(verdict=Action.KILL)
    reports: list = []
    h.c.on_kill = lambda report, ev: reports.append((report, ev))
    h.c.register_server(10, pgid=10)
    h.c.open_call("c1", 100.0, server_pid=10)
    h.c.on_flow(flow(101.0, pid=10), "procfs")
    h.c.on_flow(flow(101.1, pid=10), "procfs")  # same burst: already dead
    assert h.kills == [(10, 10)]
    kills = [e for e in h.events if isinstance(e, KillEvent)]
    assert len(kills) == 1
    k = kills[0]
    assert k.server_pid == 10 and k.rule == "r1" and k.correlation_ids == ["c1"]
    assert k.flow["dst_port"] == 443 and k.flow["source"] == "procfs" and k.killed_pids == [10]
    assert len(reports) == 1 and reports[0][0].dead
    assert h.c.kill_report(10) is not None
    assert event_from_dict(k.to_dict()) == k


def test_orphan_kill_targets_only_the_server_it_came_from():
    tree = ProcTree(live=False)
    tree.learn(11, 10)
    h = Harness(verdict=Action.KILL, proctree=tree)
    h.c.register_server(10)
    h.c.register_server(20, cgroup_id=99)
    h.c.on_flow(flow(1.0, pid=555))  # nobody's: nothing is killed
    assert h.kills == []
    h.c.on_flow(flow(1.0, pid=11))  # the server 10's child, with no call open
    assert h.kills == [(10, None)]
    h.c.on_flow(flow(1.0, pid=777, cgroup=99))  # server 20's own cgroup
    assert h.kills == [(10, None), (20, None)]


def test_killer_failure_is_reported_not_raised():
    def bad_killer(pid: int, **kw: object) -> KillReport:
        raise PermissionError("nope")

    events: list = []
    c = Correlator(
        JoinSpec(),
        lambda f, o: Decision(Action.KILL, "r", "x", "v"),
        events.append,
        killer=bad_killer,
        proctree=ProcTree(live=False),
    )
    c.open_call("c1", 1.0, server_pid=10)
    c.on_flow(flow(2.0, pid=10))
    (k,) = [e for e in events if isinstance(e, KillEvent)]
    assert k.survivors == [10]


def test_future_timestamps_do_not_expire_live_sessions():
    import time

    h = Harness(JoinSpec(window_s=5.0), lateness_s=1.0)
    now = time.time()
    h.c.open_call("c1", now - 2, server_pid=10)
    h.c.close_call("c1", now - 1)
    h.c.join(flow(now + 10 * 365 * 86400, pid=3))  # a producer clock years ahead
    assert h.c.open_sessions == 1
    assert h.c.join(flow(now, pid=10)) == ["c1"]


def test_a_kill_that_left_survivors_is_tried_again():
    calls: list[int] = []

    def stubborn(pid: int, **kw: object) -> KillReport:
        calls.append(pid)
        survivors = (pid,) if len(calls) == 1 else ()
        return KillReport(pid, pid, (pid,), survivors, False, 0.0)

    events: list = []
    c = Correlator(
        JoinSpec(),
        lambda f, o: Decision(Action.KILL, "r", "x", "v"),
        events.append,
        killer=stubborn,
        proctree=ProcTree(live=False),
    )
    c.open_call("c1", 1.0, server_pid=10)
    for t in (2.0, 3.0, 4.0):
        c.on_flow(flow(t, pid=10))
    assert calls == [10, 10]
    assert [e.survivors for e in events if isinstance(e, KillEvent)] == [[10], []]
