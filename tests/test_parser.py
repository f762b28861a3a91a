"""The grammar and the AST: every construct parses, every node knows file:line:col."""

from __future__ import annotations

import pytest

from mcp_defense.policy.diagnostics import PolicyError, format_text
from mcp_defense.policy.parser import parse, parse_duration
from mcp_defense.resources import builtin_policy_dir

FULL = """# a comment
import "other.mcpd"
let db = "localhost:5432"
default allow "nothing matched"

archetype web-fetch {
  description "fetcher"
  paths   none
  writes  none
  network any
  spawn   "git", "npm"
  learn   90m
}

jewels keys {
  crown "~/.ssh/id_*",
        "/proc/*/environ"
  auth  "**/.env"
}

classify {
  tool "read_*" reads
  tool "exec" spawns network
  key "cmd" as command spawns
  key "blob"
}

rule r1 priority -5 for web-fetch learn {
  description "multi-line"
  when call.paths.exists(p,
         # comment inside the expression
         jewel(p) == "crown")
       && call.reads
  approve "why {path}"
}

flow rule f1 { when flow.dst_port == 53
  allow
}

orphan rule o1 priority 1 {
  when true
  alert "orphan {dst}"
}

correlate {
  join flow.pid == call.server_pid
  window 250ms
}

test "t1" {
  archetype web-fetch
  agent "claude"
  call "fetch" {"url": "https://x", "n": [1, -2.5e3, true, false, null, {}], "o": {}}
  expect approve by r1
}
"""


def test_every_construct_parses_with_positions() -> None:
    f = parse(FULL, "full.mcpd")
    assert [i.path.value for i in f.imports] == ["other.mcpd"]
    assert f.lets[0].name == "db" and f.lets[0].value.value == "localhost:5432"
    assert f.defaults[0].action == "allow"
    a = f.archetypes[0]
    assert a.name == "web-fetch" and a.learn_s == 5400
    assert a.paths.kind == "none" and a.network.kind == "any"
    assert [s.value for s in a.spawn.items] == ["git", "npm"]
    assert (a.span.line, a.span.column) == (6, 11)
    j = f.jewels[0]
    assert [lv.level for lv in j.levels] == ["crown", "auth"]
    assert j.levels[0].globs[1].span.line == 17
    c = f.classify[0]
    assert c.tools[1].effects == ("spawns", "network")
    assert c.keys[0].role == "command" and c.keys[1].role is None
    r1, f1, o1 = f.rules
    assert (r1.kind, r1.priority, r1.scope, r1.learn) == ("rule", -5, ("web-fetch",), True)
    assert r1.action == "require_approval" and r1.reason.value == "why {path}"
    assert "comment inside" not in r1.when and "&& call.reads" in r1.when
    assert r1.when_span.line == 30
    assert (f1.kind, f1.action) == ("flow", "allow")
    assert (o1.kind, o1.action, o1.priority) == ("orphan", "alert", 1)
    corr = f.correlate[0]
    assert corr.window_s == 0.25 and corr.keys[0].flow_field == "flow.pid"
    t = f.tests[0]
    assert (t.archetype, t.agent, t.tool, t.expect, t.expect_rule) == (
        "web-fetch",
        "claude",
        "fetch",
        "require_approval",
        "r1",
    )
    assert t.arguments["n"][1:] == [-2500.0, True, False, None, {}]
    assert t.arguments["url"].value == "https://x"


@pytest.mark.parametrize(
    "text,seconds", [("5s", 5), ("250ms", 0.25), ("24h", 86400), ("2d", 172800), ("3m", 180)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


BAD = {
    "missing_action": "rule x {\n  when true\n}\n",
    "two_strings": 'archetype a {\n  paths "x" "y"\n}\n',
    "unquoted_glob": "jewels j {\n  crown ~/.ssh/id_rsa\n}\n",
    "bad_keyword": "archetyp a {\n}\n",
    "missing_brace": 'archetype a {\n  paths "x"\n',
    "bad_duration": "archetype a {\n  learn 5 hours\n}\n",
    "priority_not_int": "rule x priority high {\n  when true\n  deny\n}\n",
    "unterminated_string": 'let x = "abc\n',
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_syntax_errors_point_at_line_and_column(name: str, snapshot) -> None:
    with pytest.raises(PolicyError) as ei:
        parse(BAD[name], f"{name}.mcpd")
    text = format_text(ei.value.diagnostics)
    assert "Traceback" not in text
    assert text.startswith(f"{name}.mcpd:")
    assert text == snapshot


def test_builtin_pack_parses() -> None:
    files = sorted(builtin_policy_dir().glob("*.mcpd"))
    assert len(files) >= 5
    for p in files:
        parse(p.read_text(), p.name)
