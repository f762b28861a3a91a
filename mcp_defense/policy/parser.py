"""Lark → AST. The grammar is `grammar/mcpd.lark`; this module only maps its trees to nodes."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from mcp_defense.policy import ast
from mcp_defense.policy.diagnostics import ERROR, Diagnostic, PolicyError
from mcp_defense.policy.limits import MAX_POLICY_BYTES, MAX_STRING_CHARS, size
from mcp_defense.resources import grammar_path

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ACTION_NAMES = {"approve": "require_approval"}


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=False,
        cache=True,  # LALR tables cached on disk (keyed by grammar hash): saves ~0.5 s per start
    )


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"([0-9]+)(ms|s|m|h|d)", text)
    if not m:
        raise ValueError(f"bad duration {text!r}")
    return int(m.group(1)) * _DURATION_UNITS[m.group(2)]


def action_name(word: str) -> str:
    """DSL action word → decision name (`approve` is spelled `require_approval` in decisions)."""
    return str(_ACTION_NAMES.get(word, word))


def _unquote(tok: Token) -> str:
    try:
        return str(json.loads(str(tok)))
    except json.JSONDecodeError:
        # Escapes JSON does not know (e.g. "\d" in a regex) are kept literally.
        return str(tok)[1:-1].replace('\\"', '"').replace("\\\\", "\\")


class _Build(Transformer[Token, Any]):
    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    def _span(self, node: Any) -> ast.Span:
        if isinstance(node, Token):
            return ast.Span(
                self.file,
                node.line or 0,
                node.column or 0,
                node.end_line or 0,
                node.end_column or 0,
            )
        meta = node
        return ast.Span(
            self.file,
            getattr(meta, "line", 0),
            getattr(meta, "column", 0),
            getattr(meta, "end_line", 0),
            getattr(meta, "end_column", 0),
        )

    def _str(self, tok: Token) -> ast.Str:
        return ast.Str(_unquote(tok), self._span(tok))

    # ---- top level
    def start(self, items: list[Any]) -> list[Any]:
        return items

    @v_args(meta=True)
    def import_stmt(self, meta: Any, c: list[Any]) -> ast.Import:
        return ast.Import(self._str(c[0]), self._span(meta))

    @v_args(meta=True)
    def let_stmt(self, meta: Any, c: list[Any]) -> ast.Let:
        return ast.Let(str(c[0]), self._str(c[1]), self._span(meta))

    @v_args(meta=True)
    def default_stmt(self, meta: Any, c: list[Any]) -> ast.Default:
        reason = self._str(c[1]) if len(c) > 1 else None
        return ast.Default(action_name(str(c[0])), reason, self._span(meta))

    # ---- archetypes
    def description(self, c: list[Any]) -> tuple[str, str]:
        return ("description", _unquote(c[0]))

    @v_args(meta=True)
    def target_any(self, meta: Any, c: list[Any]) -> ast.Targets:
        return ast.Targets("any", (), self._span(c[0]))

    @v_args(meta=True)
    def target_none(self, meta: Any, c: list[Any]) -> ast.Targets:
        return ast.Targets("none", (), self._span(c[0]))

    @v_args(meta=True)
    def string_list(self, meta: Any, c: list[Any]) -> ast.Targets:
        return ast.Targets("list", tuple(self._str(t) for t in c), self._span(meta))

    def arch_paths(self, c: list[Any]) -> tuple[str, Any]:
        return ("paths", c[0])

    def arch_writes(self, c: list[Any]) -> tuple[str, Any]:
        return ("writes", c[0])

    def arch_network(self, c: list[Any]) -> tuple[str, Any]:
        return ("network", c[0])

    def arch_spawn(self, c: list[Any]) -> tuple[str, Any]:
        return ("spawn", c[0])

    def arch_runtime(self, c: list[Any]) -> tuple[str, Any]:
        return ("runtime", c[0])

    @v_args(meta=True)
    def arch_env(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        return ("env", c[0])

    @v_args(meta=True)
    def env_any(self, meta: Any, c: list[Any]) -> ast.EnvDecl:
        return ast.EnvDecl("any", (), False, self._span(c[0]))

    @v_args(meta=True)
    def env_none(self, meta: Any, c: list[Any]) -> ast.EnvDecl:
        return ast.EnvDecl("none", (), False, self._span(c[0]))

    @v_args(meta=True)
    def env_items(self, meta: Any, c: list[Any]) -> ast.EnvDecl:
        names = tuple(self._str(t) for t in c if t.type == "STRING")
        default = any(t.type == "ENV_DEFAULT" for t in c)
        return ast.EnvDecl("list", names, default, self._span(meta))

    def arch_learn(self, c: list[Any]) -> tuple[str, Any]:
        return ("learn_s", parse_duration(str(c[0])))

    @v_args(meta=True)
    def archetype(self, meta: Any, c: list[Any]) -> ast.Archetype:
        fields: dict[str, Any] = {}
        for key, value in c[1:]:
            fields[key] = value
        return ast.Archetype(name=str(c[0]), span=self._span(c[0]), **fields)

    # ---- jewels
    @v_args(meta=True)
    def jewel_level(self, meta: Any, c: list[Any]) -> ast.JewelLevel:
        return ast.JewelLevel(str(c[0]), c[1].items, self._span(c[0]))

    @v_args(meta=True)
    def jewels(self, meta: Any, c: list[Any]) -> ast.Jewels:
        desc = ""
        levels = []
        for item in c[1:]:
            if isinstance(item, tuple):
                desc = item[1]
            else:
                levels.append(item)
        return ast.Jewels(str(c[0]), tuple(levels), self._span(c[0]), desc)

    # ---- classify
    @v_args(meta=True)
    def classify_tool(self, meta: Any, c: list[Any]) -> ast.ClassifyTool:
        return ast.ClassifyTool(c[0].items, tuple(str(t) for t in c[1:]), self._span(meta))

    @v_args(meta=True)
    def classify_key(self, meta: Any, c: list[Any]) -> ast.ClassifyKey:
        role = None
        effects = []
        for t in c[1:]:
            if t.type == "ROLE":
                role = str(t)
            else:
                effects.append(str(t))
        return ast.ClassifyKey(c[0].items, role, tuple(effects), self._span(meta))

    @v_args(meta=True)
    def classify(self, meta: Any, c: list[Any]) -> ast.Classify:
        tools = tuple(x for x in c if isinstance(x, ast.ClassifyTool))
        keys = tuple(x for x in c if isinstance(x, ast.ClassifyKey))
        return ast.Classify(tools, keys, self._span(meta))

    # ---- rules
    def priority(self, c: list[Any]) -> tuple[str, Any]:
        return ("priority", int(c[0]))

    @v_args(meta=True)
    def scope(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        return ("scope", (tuple(str(t) for t in c), self._span(meta)))

    def learn_flag(self, c: list[Any]) -> tuple[str, Any]:
        return ("learn", True)

    def listed_flag(self, c: list[Any]) -> tuple[str, Any]:
        return ("listed", (True, self._span(c[0])))

    def rule_opts(self, c: list[Any]) -> list[Any]:
        return c

    def when_clause(self, c: list[Any]) -> tuple[str, Any]:
        tok = c[1]
        text = str(tok)
        lead = len(text) - len(text.lstrip(" \t"))  # the CEL token starts at the blank
        span = self._span(tok)
        span = ast.Span(span.file, span.line, span.column + lead, span.end_line, span.end_column)
        return ("when", (_strip_comment_lines(text[lead:]), span))

    @v_args(meta=True)
    def action_clause(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        reason = self._str(c[1]) if len(c) > 1 else None
        return ("action", (action_name(str(c[0])), self._span(c[0]), reason))

    def rule_body(self, c: list[Any]) -> list[Any]:
        return c

    def _rule(self, kind: str, meta: Any, c: list[Any]) -> ast.Rule:
        name_tok, opts, body = c[0], c[1], c[2]
        kw: dict[str, Any] = {}
        for key, value in opts:
            if key == "scope":
                kw["scope"], kw["scope_span"] = value
            elif key == "listed":
                kw["listed"], kw["listed_span"] = value
            else:
                kw[key] = value
        when, when_span = "", self._span(name_tok)
        action, action_span, reason = "deny", self._span(name_tok), None
        for key, value in body:
            if key == "description":
                kw["description"] = value
            elif key == "when":
                when, when_span = value
            elif key == "action":
                action, action_span, reason = value
        return ast.Rule(
            kind=kind,
            name=str(name_tok),
            span=self._span(name_tok),
            when=when,
            when_span=when_span,
            action=action,
            action_span=action_span,
            reason=reason,
            **kw,
        )

    @v_args(meta=True)
    def rule(self, meta: Any, c: list[Any]) -> ast.Rule:
        return self._rule("rule", meta, c)

    @v_args(meta=True)
    def flow_rule(self, meta: Any, c: list[Any]) -> ast.Rule:
        return self._rule("flow", meta, c)

    @v_args(meta=True)
    def orphan_rule(self, meta: Any, c: list[Any]) -> ast.Rule:
        return self._rule("orphan", meta, c)

    @v_args(meta=True)
    def response_rule(self, meta: Any, c: list[Any]) -> ast.Rule:
        return self._rule("response", meta, c)

    # ---- correlate
    @v_args(meta=True)
    def join_key(self, meta: Any, c: list[Any]) -> ast.JoinKey:
        left, right = str(c[0]), str(c[1])
        return ast.JoinKey(left, right, self._span(meta))

    def join(self, c: list[Any]) -> tuple[str, Any]:
        return ("keys", tuple(c))

    def window(self, c: list[Any]) -> tuple[str, Any]:
        return ("window_s", parse_duration(str(c[0])))

    @v_args(meta=True)
    def correlate(self, meta: Any, c: list[Any]) -> ast.Correlate:
        kw = dict(c)
        return ast.Correlate(kw.get("keys", ()), kw.get("window_s"), self._span(meta))

    # ---- tests
    @v_args(meta=True)
    def test_archetype(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        return ("archetype", (str(c[0]), self._span(c[0])))

    def test_agent(self, c: list[Any]) -> tuple[str, Any]:
        return ("agent", _unquote(c[0]))

    def test_call(self, c: list[Any]) -> tuple[str, Any]:
        tool = _unquote(c[0]) if c[0].type == "STRING" else str(c[0])
        args = c[1] if len(c) > 1 else {}
        return ("call", (tool, args))

    @v_args(meta=True)
    def test_expect(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        rule = str(c[1]) if len(c) > 1 else None
        return ("expect", (action_name(str(c[0])), rule, self._span(meta)))

    @v_args(meta=True)
    def test(self, meta: Any, c: list[Any]) -> ast.Test:
        kw: dict[str, Any] = {}
        for key, value in c[1:]:
            if key == "archetype":
                kw["archetype"], kw["archetype_span"] = value
            elif key == "agent":
                kw["agent"] = value
            elif key == "call":
                kw["tool"], kw["arguments"] = value
            elif key == "expect":
                kw["expect"], kw["expect_rule"], kw["expect_span"] = value
        return ast.Test(name=_unquote(c[0]), span=self._span(c[0]), **kw)

    # ---- JSON (strings stay ast.Str so ${vars} can be expanded with positions)
    def json_object(self, c: list[Any]) -> dict[str, Any]:
        return {k: v for k, v in c if k is not None} if c else {}

    def json_pair(self, c: list[Any]) -> tuple[str, Any]:
        return (_unquote(c[0]), c[1])

    def json_array(self, c: list[Any]) -> list[Any]:
        return list(c)

    def json_string(self, c: list[Any]) -> ast.Str:
        return self._str(c[0])

    def json_number(self, c: list[Any]) -> int | float:
        text = str(c[0])
        return float(text) if any(ch in text for ch in ".eE") else int(text)

    def json_true(self, c: list[Any]) -> bool:
        return True

    def json_false(self, c: list[Any]) -> bool:
        return False

    def json_null(self, c: list[Any]) -> None:
        return None


_COMMENT_LINE = re.compile(r"^[^\S\n]*#[^\n]*", re.MULTILINE)


def _strip_comment_lines(cel: str) -> str:
    """Whole-line `#` comments inside a multi-line `when` become blanks (positions kept)."""
    if "#" not in cel:
        return cel.rstrip()
    return _COMMENT_LINE.sub(lambda m: " " * len(m.group()), cel).rstrip()


_FRIENDLY = {
    "_NL": "end of line",
    "STRING": 'a "string"',
    "NAME": "a name",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "ACTION": "an action (allow, deny, approve, alert, kill)",
    "CEL": "a CEL expression",
    "WHEN": "'when'",
    "DURATION": "a duration (e.g. 5s, 24h)",
    "SIGNED_INT": "an integer",
    "EFFECT": "an effect (reads, writes, spawns, network)",
    "$END": "end of file",
}


def _expected(names: set[str]) -> str:
    first = [n for n in ("RBRACE", "_NL", "ACTION") if n in names]
    words = [_FRIENDLY[n] for n in first]
    words += sorted({_FRIENDLY.get(n, _keyword(n)) for n in names - set(first)})
    if len(words) > 6:
        words = words[:6] + ["…"]
    return ", ".join(words)


def _keyword(name: str) -> str:
    term = {t.name: t for t in _lark().terminals}.get(name)
    if term is not None and term.pattern.type == "str":
        return repr(term.pattern.value)
    return name.lower()


def _syntax_diag(file: str, source: str, e: UnexpectedInput) -> Diagnostic:
    line, col = getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1
    if isinstance(e, UnexpectedCharacters):
        ch = (
            source.splitlines()[line - 1][col - 1 : col]
            if line - 1 < len(source.splitlines())
            else ""
        )
        msg = f"unexpected character {ch!r}"
        if e.allowed:
            msg += f"; expected {_expected(set(e.allowed))}"
    elif isinstance(e, UnexpectedEOF):
        msg = f"unexpected end of file; expected {_expected(set(e.expected))}"
    elif isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            lines = source.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
            shown = "end of file"
        elif tok.type == "_NL":
            shown = "end of line"
        else:
            first = str(tok).split("\n", 1)[0].strip()
            if tok.type == "CEL" or len(first) > 24:
                first = (first.split() or [first])[0][:24]
            shown = repr(first)
        msg = f"unexpected {shown}; expected {_expected(set(e.expected))}"
        if str(tok).startswith('"') and str(tok).split("\n", 1)[0].count('"') % 2 == 1:
            msg = "unterminated string (strings end on the same line)"
    else:  # pragma: no cover - lark's other error types
        msg = str(e).splitlines()[0]
    return Diagnostic(ast.Span(file, line, col), ERROR, "syntax", msg, _line(source, line))


def _line(source: str, line: int) -> str:
    lines = source.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""


def too_large(file: str, n: int) -> Diagnostic:
    """The diagnostic of a policy file of `n` bytes, past MAX_POLICY_BYTES."""
    return Diagnostic(
        ast.Span(file, 1, 1),
        ERROR,
        "too-large",
        f"policy file of {size(n)}: the limit is {size(MAX_POLICY_BYTES)} per file",
    )


def _long_strings(file: str, tree: Tree[Token]) -> list[Diagnostic]:
    """A diagnostic for each string literal longer than MAX_STRING_CHARS, where it starts."""
    out = []
    for tok in tree.scan_values(
        lambda t: isinstance(t, Token) and t.type == "STRING" and len(t) - 2 > MAX_STRING_CHARS
    ):
        out.append(
            Diagnostic(
                ast.Span(file, tok.line or 1, tok.column or 1),
                ERROR,
                "too-large",
                f"string of {len(tok) - 2:,} characters: the limit is {MAX_STRING_CHARS:,} "
                "characters per string",
            )
        )
    return out


def _handlers(b: _Build) -> dict[str, tuple[Any, bool]]:
    """Rule name → (method, wants meta) of `b`, as lark's Transformer would dispatch."""
    out: dict[str, tuple[Any, bool]] = {}
    for name in dir(type(b)):
        if name.startswith("_") or name == "transform":
            continue
        f = getattr(b, name)
        if callable(f):
            out[name] = (f, getattr(f, "visit_wrapper", None) is not None)
    return out


def _build(b: _Build, tree: Tree[Token]) -> list[Any]:
    """`b.transform(tree)` without lark's per-node dispatch (a quarter of a large policy's
    parse): each rule's method by name (meta first for `v_args(meta=True)` ones), a Tree for
    rules without one; tokens pass through (`_Build` has no terminal methods)."""
    items = _walk(tree, _handlers(b))
    return items.children if isinstance(items, Tree) else items


def _walk(t: Tree[Token], handlers: dict[str, tuple[Any, bool]]) -> Any:
    # (A function, not a recursive closure: that would be a reference cycle per parse.)
    kids = [_walk(c, handlers) if type(c) is Tree else c for c in t.children]
    h = handlers.get(t.data)
    if h is None:
        return Tree(t.data, kids, t.meta)
    f, meta = h
    return f(t.meta, kids) if meta else f(kids)


def parse(source: str, file: str = "<string>") -> ast.PolicyFile:
    """Parse one file. Raises PolicyError with a positioned syntax diagnostic."""
    if len(source) > MAX_POLICY_BYTES // 4:  # (a character is at most 4 bytes)
        n = len(source.encode("utf-8", "surrogateescape"))
        if n > MAX_POLICY_BYTES:
            raise PolicyError([too_large(file, n)])
    text = source if source.endswith("\n") else source + "\n"
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        raise PolicyError([_syntax_diag(file, text, e)]) from None
    long = _long_strings(file, tree)
    if long:
        raise PolicyError(long)
    items = _build(_Build(file), tree)
    groups: dict[type, list[Any]] = {}
    for item in items:
        groups.setdefault(type(item), []).append(item)

    def g(cls: type) -> tuple[Any, ...]:
        return tuple(groups.get(cls, ()))

    return ast.PolicyFile(
        path=file,
        source=text,
        imports=g(ast.Import),
        lets=g(ast.Let),
        defaults=g(ast.Default),
        archetypes=g(ast.Archetype),
        jewels=g(ast.Jewels),
        classify=g(ast.Classify),
        rules=g(ast.Rule),
        correlate=g(ast.Correlate),
        tests=g(ast.Test),
    )
