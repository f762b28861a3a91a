"""Flow and orphan decisions fail closed: an erroring rule takes the most severe action it
could have taken, and an unknown archetype or an internal error never answers `alert`."""

from __future__ import annotations

from pathlib import Path

import mcp_defense
from mcp_defense.policy.facts import Action, FlowFacts

POLICY = """\
archetype filesystem {
  paths "${workspace}/**"
  network none
  spawn none
}

archetype web {
  paths "/tmp/**"
  network "example.org:443"
}

flow rule errors_then_kills priority 100 {
  when flow.dst_port / (flow.dst_port - 443) > 0
  kill "odd port {dst}"
}

flow rule later_alert priority 10 {
  when flow.dst_port == 443
  alert "https flow"
}

orphan rule orphan_errors priority 100 for filesystem {
  when int(flow.host) > 0
  alert "unexplained flow"
}
"""


def _table(tmp_path: Path):  # noqa: ANN202
    (tmp_path / "p.mcpd").write_text(POLICY)
    return mcp_defense.compile([str(tmp_path)], {"workspace": str(tmp_path)})


def test_a_kill_rule_that_errors_still_kills(tmp_path: Path) -> None:
    table = _table(tmp_path)
    # dst_port 443: division by zero in the kill rule; the later rule would only alert.
    d = table.decide_flow("filesystem", FlowFacts(dst_ip="203.0.113.9", dst_port=443), False)
    assert d.action is Action.KILL
    assert d.rule == "rule_error"
    assert "errors_then_kills" in d.reason and "could not be evaluated" in d.reason


def test_a_rule_that_evaluates_is_unchanged(tmp_path: Path) -> None:
    table = _table(tmp_path)
    d = table.decide_flow("filesystem", FlowFacts(dst_ip="203.0.113.9", dst_port=444), False)
    assert (d.action, d.rule) == (Action.KILL, "errors_then_kills")
    d = table.decide_flow("filesystem", FlowFacts(dst_ip="203.0.113.9", dst_port=80), False)
    assert d.action is Action.ALLOW


def test_an_erroring_orphan_rule_takes_its_action(tmp_path: Path) -> None:
    table = _table(tmp_path)
    d = table.decide_flow(
        "filesystem", FlowFacts(dst_ip="203.0.113.9", dst_port=80, host="x.example"), True
    )
    assert d.action is Action.ALERT
    assert "orphan_errors" in d.reason and d.rule == "rule_error"


def test_unknown_archetype_takes_the_most_severe_flow_action(tmp_path: Path) -> None:
    table = _table(tmp_path)
    d = table.decide_flow("nosuch", FlowFacts(dst_ip="203.0.113.9", dst_port=443), False)
    assert d.action is Action.KILL  # the table has a flow rule that kills
    assert "unknown archetype" in d.reason
    d = table.decide_flow("nosuch", FlowFacts(dst_ip="203.0.113.9", dst_port=443), True)
    assert d.action is Action.ALERT  # orphan rules here can only alert: flagged, at least


def test_builtin_pack_unknown_archetype_kills(builtin_table) -> None:  # noqa: ANN001
    d = builtin_table.decide_flow("nosuch", FlowFacts(dst_ip="169.254.169.254", dst_port=80), True)
    assert d.action is Action.KILL
