"""Unit tests of mcp_defense.policy.cel: errors and their positions, the rejected forms, cost,
folding under archetype constants, witnesses, clauses. Semantics against cel-cpp are proven
in test_cel_differential.py."""

from __future__ import annotations

import threading

import pytest
from support.cel_env import FUNCTIONS, VARS, Arch, Ctx, make_env

from mcp_defense.policy import cel, schema
from mcp_defense.policy.facts import CallFacts, FlowFacts

ENV = make_env()
RULE_ENV = make_env(schema.RULE_SCOPES["rule"])
FLOW_ENV = make_env(schema.RULE_SCOPES["flow"])


def lower(src: str, arch: Arch | None = None, env: cel.CelEnv = ENV) -> cel.Lowered:
    return cel.lower(cel.parse(src), env, {"archetype": arch or Arch(), "vars": dict(VARS)})


def call(**kw: object) -> Ctx:
    kw.setdefault("tool", "read_file")
    kw.setdefault("args", {})
    return Ctx(CallFacts(**kw), None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize(
    "src, line, col, fragment",
    [
        ("call.tool ==", 1, 13, "end of expression"),
        ("1 +", 1, 4, "end of expression"),
        ("a $ b", 1, 3, "unexpected character '$'"),
        ("call.paths.exists(p,\n   jewel(p) == ))", 2, 16, "unexpected token ')'"),
        ('call.tool == "x', 1, 14, "unexpected character"),
        ("(call.writes", 1, 13, "end of expression"),
    ],
)
def test_syntax_errors_have_positions(src: str, line: int, col: int, fragment: str) -> None:
    with pytest.raises(cel.CelError) as e:
        cel.parse(src)
    assert (e.value.line, e.value.column) == (line, col), e.value
    assert fragment in e.value.message


def test_parse_returns_the_ast_with_positions() -> None:
    tree = cel.parse('call.tool == "x"')
    assert (tree.root.kind, tree.root.a, tree.root.line, tree.root.col) == ("bin", "==", 1, 11)
    assert tree.text() == 'call.tool == "x"'


# ---------------------------------------------------------------------------------------------
# Types


@pytest.mark.parametrize(
    "src, typ",
    [
        ("call.writes", "bool"),
        ("call.tool", "string"),
        ("call.paths", "list<string>"),
        ("call.args", "map<string,dyn>"),
        ("call.args.path", "dyn"),
        ("size(call.paths) + 1", "int"),
        ("call.paths.map(p, jewel(p))", "list<string>"),
        ("call.paths.filter(p, p.endsWith('.env'))", "list<string>"),
        ("call.args.items.exists(i, i)", "dyn"),
        ("call.args.flag && call.writes", "dyn"),
        ("flow.dst_port", "int"),
        ("vars.workspace", "string"),
        ("[]", "list<dyn>"),
        ('{"a": 1}', "map<string,int>"),
        ("call.writes ? call.args.x : 1", "dyn"),
        ("double(call.args.n)", "double"),
    ],
)
def test_check_returns_the_type(src: str, typ: str) -> None:
    assert cel.check(cel.parse(src), ENV) == typ


@pytest.mark.parametrize(
    "src, line, col, fragment",
    [
        ('call.paths == "x"', 1, 12, "'==' applied to (list<string>, string)"),
        ("call.tool + 1", 1, 11, "'+' applied to (string, int)"),
        ("size(call.writes)", 1, 6, "size() needs a string, list or map, not bool"),
        ("call.nope", 1, 6, "no field 'nope' on Call"),
        ("call.writes && call.nope", 1, 21, "no field 'nope'"),
        ("vars.nope", 1, 6, "undefined variable 'nope'"),
        ("nope", 1, 1, "undeclared reference to 'nope'"),
        ("jewel(1)", 1, 7, "jewel() expects string, got int"),
        ("glob(call.tool)", 1, 1, "glob() takes 2 arguments, got 1"),
        ("frobnicate(call.tool)", 1, 1, "undeclared function 'frobnicate'"),
        ("call.paths.exists(p,\n  p.size())", 2, 3, "predicate must be a bool, not int"),
        ("call.tool.startsWith(1)", 1, 22, "startsWith() needs strings, got int"),
        ("!call.tool", 1, 1, "! needs a bool"),
        ("call.tool && true", 1, 1, "operands of && must be bool"),
        ("call.writes ? 1 : 'a'", 1, 1, "?: branches must have one type"),
        ("[1, 'a']", 1, 5, "list elements must have one type"),
        ("call.tool < 1", 1, 11, "'<' applied to (string, int)"),
        ("call.paths[call.tool]", 1, 12, "list index must be an int"),
        ("jewel", 1, 1, "is a function"),
        ("archetype.allows_path", 1, 11, "allows_path is a function"),
    ],
)
def test_type_errors_have_positions(src: str, line: int, col: int, fragment: str) -> None:
    with pytest.raises(cel.CelError) as e:
        cel.check(cel.parse(src), ENV)
    assert fragment in e.value.message, e.value
    assert (e.value.line, e.value.column) == (line, col), e.value


def test_scope_follows_the_rule_kind() -> None:
    cel.check(cel.parse("flow.dst_port == 53"), FLOW_ENV)
    with pytest.raises(cel.CelError, match="'flow' is not available"):
        cel.check(cel.parse("flow.dst_port == 53"), RULE_ENV)
    with pytest.raises(cel.CelError, match="'call' is not available"):
        cel.check(cel.parse("call.writes"), FLOW_ENV)


@pytest.mark.parametrize(
    "src, fragment",
    [
        ('bool("true")', "bool() is not CEL's"),
        ("1u == 1u", "uint is not supported"),
        ('b"x" == b"x"', "bytes literals are not supported"),
        ("type(1) == int", "type() is not supported"),
        ("dyn(1) == 1", "dyn() is not supported"),
        ('timestamp("2024-01-01T00:00:00Z")', "timestamps are not supported"),
        ("1.5 + 1.0 > 2.0", "double arithmetic is not supported"),
        ("call.args.n + 1 > 2", "arithmetic on dyn values is not supported"),
        ("-call.args.n", "unary - needs an int or a double"),
        ("string(call.writes)", "string() of bool is not supported"),
        ("string(call.args.x)", "string() of dyn is not supported"),
        ("call.paths < call.paths", "'<' applied to (list<string>, list<string>)"),
        ("1 == 1.0", "'==' applied to (int, double)"),
        ("call.writes == 1", "'==' applied to (bool, int)"),
        ("call.args.x == call.paths", "'==' applied to (dyn, list<string>)"),
        ("call.tool == null", "'==' applied to (string, null_type)"),
        ('"a" in call.tool', "for substrings use s.contains"),
        ("call.paths.contains('/x')", "use `x in list`"),
        ("call.tool[0]", "strings cannot be indexed"),
        ("call.tool.exists(c, c == 'a')", "exists() needs a list or map, not string"),
        ("call.paths.map(p, p, p)", "takes a variable and an expression"),
        ("call.paths.exists(p)", "takes a variable and an expression"),
        ("call.paths.exists('p', true)", "must be a variable name"),
        ("call.paths.reduce(a, p, 0, a)", "cel-python extension"),
        ("call.tool.lowerAscii()", "lowerAscii() is not available"),
        ("call.tool.jewel()", "jewel() is a global function"),
        ("allows_path(call.tool)", "allows_path() is called on archetype"),
        ('call.tool.matches("(")', "invalid RE2 pattern"),
        ('matches(call.tool, "[")', "invalid RE2 pattern"),
        ('{"a": call.tool}', "map literal values must be compile-time constants"),
        ('{1: "a"}', "map literal keys must be string literals"),
        ('{"a": 1, "a": 2}', "duplicate map key 'a'"),
        ("[call.args.a] + [call.args.b]", "concatenating lists of dyn"),
        ("has(call)", "has() needs a field selection"),
        ("flow == flow", "'==' applied to (Flow, Flow)"),
        ("Msg{a: 1}", "message construction is not supported"),
        (".call", "leading-dot names are not supported"),
        ("99999999999999999999 > 1", "out of the int64 range"),
        ("archetype.allows_flow(call)", "allows_flow() expects Flow, got Call"),
    ],
)
def test_rejected_forms(src: str, fragment: str) -> None:
    with pytest.raises(cel.CelError) as e:
        cel.check(cel.parse(src), ENV)
    assert fragment in e.value.message, e.value


def test_env_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="unknown CEL variables"):
        cel.CelEnv(frozenset({"call", "request"}))
    with pytest.raises(ValueError, match="undeclared functions"):
        cel.CelEnv(frozenset({"call"}), (), {"nope": len})


# ---------------------------------------------------------------------------------------------
# Cost


def cost(src: str) -> int:
    return cel.estimate_cost(cel.parse(src), ENV)


def test_cost_grows_with_the_work() -> None:
    single = cost('call.tool == "x"')
    both = cost('call.tool == "x" && call.writes')
    loop = cost('call.paths.exists(p, p == "x")')
    loop_fn = cost('call.paths.exists(p, jewel(p) == "crown")')
    nested = cost("call.paths.exists(p, call.hosts.exists(h, p.contains(h)))")
    assert single < both < loop < loop_fn < nested
    assert cost('call.tool.matches("x")') > cost('call.tool.startsWith("x")')
    assert cost('["a", "b"].exists(p, p == "x")') < loop  # a literal's size is known
    assert cost('call.writes ? call.paths.exists(p, jewel(p) == "x") : false') >= loop_fn


def test_cost_limit() -> None:
    shipped = [
        cost(src)
        for src in (
            'call.paths.exists(p, jewel(p) == "crown")',
            "call.hosts.exists(h, is_loopback(h) || is_link_local(h) || is_private(h))",
            "call.spawns && archetype.spawn && call.programs.exists(p, !archetype.allows_program(p))",
        )
    ]
    assert max(shipped) < cel.COST_LIMIT
    triple = cost(
        "call.paths.exists(p, call.hosts.exists(h, call.urls.exists(u, "
        "p.contains(h) && u.contains(h))))"
    )
    assert triple > cel.COST_LIMIT
    assert cost("call.paths.exists(p, call.hosts.exists(h, p.matches(h)))") > cel.COST_LIMIT


# ---------------------------------------------------------------------------------------------
# Folding under archetype constants


def test_rules_fold_to_false_for_archetypes_they_cannot_fire_for() -> None:
    spawner = Arch(spawn=True)
    assert lower("call.spawns && !archetype.spawn", spawner).const
    assert lower("call.spawns && !archetype.spawn", spawner).value is False
    assert lower("archetype.spawn == false && call.spawns", spawner).value is False
    assert lower('call.network && archetype.network == "none"', Arch(network="any")).value is False
    assert (
        lower('flow.dst_port == 53 && archetype.network != "none"', Arch(network="none")).value
        is False
    )
    assert lower("archetype.learning || archetype.name == 'filesystem'").value is True
    assert lower("true").const and lower("true").value is True
    assert lower('vars.workspace + "/x" == "/w/x"').value is True
    assert lower('["a", "b"].exists(x, x == vars.home)').value is False


def test_folded_rules_keep_the_live_part() -> None:
    not_spawner = Arch(spawn=False)
    for src in (
        "call.spawns && !archetype.spawn",
        "!archetype.spawn && call.spawns",
        "archetype.spawn == false && call.spawns",
    ):
        low = lower(src, not_spawner)
        assert not low.const
        for spawns in (True, False):
            assert low.fn(call(spawns=spawns)) is spawns
    # `true && x` is x itself: for a bare fact the closure is its attribute getter
    low = lower("!archetype.spawn && call.spawns", not_spawner)
    assert low.fn(call(spawns=True)) is True


def test_lower_raises_when_the_whole_expression_always_fails() -> None:
    with pytest.raises(cel.CelEvalError):
        lower("1/0 == 1")
    # CEL: `false &&` absorbs any error (cel-python raised out of `map`; docs/language.md)
    assert lower("false && [1].map(x, 1/0) == []").value is False
    assert lower("false && 1/0 == 1").value is False  # an error value is absorbed


def test_missing_implementation_is_a_static_error() -> None:
    env = cel.CelEnv(schema.RULE_SCOPES["rule"], (), {"jewel": FUNCTIONS["jewel"]})
    cel.check(cel.parse("is_ip(call.tool)"), env)  # declared: the checker accepts it
    with pytest.raises(cel.CelError, match="no implementation is bound for is_ip"):
        cel.lower(cel.parse("is_ip(call.tool)"), env, {"archetype": Arch(), "vars": {}})


def test_implementation_failures_are_eval_errors() -> None:
    def boom(p: str) -> str:
        raise RuntimeError("matcher broke")

    env = cel.CelEnv(schema.RULE_SCOPES["rule"], (), {"jewel": boom, "basename": lambda p: 42})
    consts = {"archetype": Arch(), "vars": {}}
    ctx = call(paths=("/a",))
    for src in ('call.paths.exists(p, jewel(p) == "crown")', 'basename(call.tool) == "x"'):
        fn = cel.lower(cel.parse(src), env, consts).fn
        with pytest.raises(cel.CelEvalError):
            fn(ctx)
    # an error value still loses to a decisive operand
    fn = cel.lower(cel.parse('call.writes && jewel(call.tool) == "x"'), env, consts).fn
    assert fn(call(writes=False)) is False


def test_lowered_type_and_runtime_archetype() -> None:
    low = cel.lower(
        cel.parse("!archetype.allows_flow(flow) && flow.dst_port != 53"), FLOW_ENV, {}
    )  # nothing folded: archetype and vars are read from ctx
    assert low.type == "bool" and not low.const
    ctx = Ctx(None, FlowFacts(host="evil.example", dst_port=443))
    assert low.fn(ctx) is True
    ctx.flow = None  # a flow rule without a flow: an error, never a silent false
    with pytest.raises(cel.CelEvalError):
        low.fn(ctx)


# ---------------------------------------------------------------------------------------------
# Witness


def test_exists_records_the_first_satisfying_element() -> None:
    ctx = call(paths=("/w/a", "/home/u/.ssh/id_rsa", "/home/u/.ssh/id_ed25519"))
    assert lower('call.paths.exists(p, jewel(p) == "crown")').fn(ctx) is True
    assert ctx.witness == {"p": "/home/u/.ssh/id_rsa", "call.paths": "/home/u/.ssh/id_rsa"}


def test_witness_for_dyn_chains_and_exists_one() -> None:
    ctx = call(args={"files": ["/w/x", "/w/.env"]}, paths=("/w/.env",))
    assert lower('call.args.files.exists(f, f.endsWith(".env"))').fn(ctx) is True
    assert ctx.witness == {"f": "/w/.env", "call.args.files": "/w/.env"}
    ctx.witness.clear()
    assert lower('call.paths.exists_one(q, jewel(q) == "auth")').fn(ctx) is True
    assert ctx.witness == {"q": "/w/.env", "call.paths": "/w/.env"}


def test_no_witness_when_nothing_matched() -> None:
    ctx = call(paths=("/w/a",))
    assert lower('call.paths.exists(p, jewel(p) == "crown")').fn(ctx) is False
    assert ctx.witness == {}


def test_nested_comprehensions_see_outer_variables() -> None:
    src = "call.paths.exists(p, call.hosts.exists(h, p.contains(h)))"
    ctx = call(paths=("/srv/example.com/x", "/w/a"), hosts=("nope", "example.com"))
    assert lower(src).fn(ctx) is True
    assert ctx.witness["p"] == "/srv/example.com/x" and ctx.witness["h"] == "example.com"
    assert lower(src).fn(call(paths=("/w/a",), hosts=("example.com",))) is False


def test_closures_are_reentrant_across_threads() -> None:
    low = lower("call.paths.exists(p, call.hosts.exists(h, p.endsWith(h)))")
    ctxs = [call(paths=(f"/x/{i}",), hosts=(str(i % 3),)) for i in range(30)]
    want = [c.call.paths[0].endswith(c.call.hosts[0]) for c in ctxs]
    errors: list[str] = []

    def worker() -> None:
        for _ in range(200):
            for c, w in zip(ctxs, want, strict=True):
                if low.fn(c) is not w:
                    errors.append(c.call.paths[0])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---------------------------------------------------------------------------------------------
# Clauses


def test_clauses_split_conjunctions_with_source_text() -> None:
    src = 'call.writes && (call.reads || call.spawns)\n  && call.paths.exists(p, jewel(p) == "x")'
    parts = cel.clauses(cel.parse(src))
    assert [t for t, _ in parts] == [
        "call.writes",
        "(call.reads || call.spawns)",
        'call.paths.exists(p, jewel(p) == "x")',
    ]
    ctx = call(writes=True, reads=False, spawns=True, paths=("/w/a",))
    values = [cel.lower(sub, ENV, {"archetype": Arch(), "vars": VARS}).fn(ctx) for _, sub in parts]
    assert values == [True, True, False]


def test_clauses_of_disjunctions_parens_and_single_expressions() -> None:
    assert [t for t, _ in cel.clauses(cel.parse("(a || b || c)"))] == ["a", "b", "c"]
    assert [t for t, _ in cel.clauses(cel.parse("call.writes"))] == ["call.writes"]
    assert [t for t, _ in cel.clauses(cel.parse("a || b && c"))] == ["a", "b && c"]


def test_clause_errors_point_into_the_whole_expression() -> None:
    parts = cel.clauses(cel.parse("call.writes &&\n  call.nope"))
    with pytest.raises(cel.CelError) as e:
        cel.check(parts[1][1], ENV)
    assert (e.value.line, e.value.column) == (2, 8)


def test_inner_macros_that_ignore_the_outer_variable_fold() -> None:
    # the inner comprehension folds on its own (no ctx, no outer variable): it must still
    # have a slot for its variable at its depth
    assert lower("[1].exists(x, [2].exists(y, y == 2))").value is True
    assert lower("[1].all(x, [2, 3].map(y, y * 2) == [4, 6])").value is True
    low = lower("call.paths.exists(p, [1].exists_one(y, [y].filter(z, z == 1) == [1]))")
    assert low.fn(call(paths=("/a",))) is True


def test_double_of_bool_is_rejected() -> None:
    with pytest.raises(cel.CelError, match=r"double\(\) of bool is not supported"):
        cel.check(cel.parse("double(call.writes) > 0.5"), ENV)
