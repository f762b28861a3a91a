"""Parsing: cel-python's grammar (`celpy/cel.lark`), by a hand-written parser straight to a
compact AST with positions (`_Node`) for the checker, the cost model and the lowering.

The parser accepts exactly the language of cel-python's grammar run through lark's LALR parser
with its contextual lexer, and reports the same errors at the same positions (proven against
that pipeline by tests/test_cel_parser_differential.py):

- Tokens are cel.lark's terminals, tried in lark's order; which terminals are tried depends on
  where the parser is, as with lark's contextual lexer: after an operand `in` is the operator
  even when a name follows (`a inx` is `a in x`) and `-1` is `-` then `1`; where an operand is
  expected `in` is a name and `-1` one literal. A character no terminal of the place matches
  is reported as the token the whole terminal set reads there ("unexpected token"), or as an
  unexpected character.
- The parser is a shift-reduce loop over an explicit stack (no recursion per nesting level):
  a syntax error is found anywhere in the source first, then `MAX_NESTING`, then the forms this
  module rejects (kept as `!` nodes while parsing, reported in the order the old tree
  converter met them, `_first_rejected`).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from celpy.evaluation import celstr

from mcp_defense.policy.cel.types import _MACROS, _REJECTED_FUNCTIONS, _T


class CelError(Exception):
    """A static problem in an expression: syntax, types, unsupported forms. Positions are
    1-based and relative to the expression source."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column


@dataclass(eq=False, slots=True)
class _Node:
    kind: str
    line: int
    col: int
    kids: tuple[_Node, ...] = ()
    a: Any = None  # kind-specific: name, operator, literal value
    b: Any = None  # kind-specific: macro variable, local depth, literal type
    start: int = -1
    end: int = -1
    t: _T = None  # static type, set by the checker
    depth: int = 0  # for macros: index of the comprehension variable in `loc`
    at: tuple[int, int] | None = None  # position of the name in `x.name` / `x.name(...)`


def _linecol(src: str, offset: int) -> tuple[int, int]:
    line = src.count("\n", 0, offset) + 1
    return line, offset - (src.rfind("\n", 0, offset) + 1) + 1


MAX_SOURCE_LENGTH = 100_000
"""Longest `when` source, in characters (cel-go's default expression size limit)."""

MAX_NESTING = 64
"""Deepest nesting of a `when`: parentheses, operators, calls, indexes, macros and literals
each open a level; a chain of one `&&` or `||` operator is a single level."""

_SHORT_CHAIN = 16  # longer chains of one && / || are balanced


# ---------------------------------------------------------------------------------------------
# Tokens: cel.lark's terminals, as lark compiles them (the differential test compares them)

_SQ_ESC = r"""\\[abfnrtv"'\\]|\\\d{3}|\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\U[0-9a-fA-F]{8}"""
_DQ_ESC = r"""\\[abfnrtv"'\\]|\\\d{3}|\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4-8}"""
_NL = "\r\n|\r|\n"
_STRING = f"(?:[rR]?'(?:{_SQ_ESC}|.)*?'|[rR]?\"(?:{_DQ_ESC}|.)*?\")"
_MLSTRING = f"(?:[rR]?'''(?:{_SQ_ESC}|{_NL}|.)*?'''|[rR]?\"\"\"(?:{_DQ_ESC}|{_NL}|.)*?\"\"\")"
_INT = "(?:-?0x(?:[0-9abcdefABCDEF])+|-?(?:[0-9])+)"
_EXP = "[eE][+-]?(?:[0-9])+"
TERMINALS: dict[str, str] = {
    # lark's order: the first alternative that matches wins
    "BYTES_LIT": f"(?:[bB]{_MLSTRING}|[bB]{_STRING})",
    "MLSTRING_LIT": _MLSTRING,
    "STRING_LIT": _STRING,
    "FLOAT_LIT": (
        f"(?:-?(?:[0-9])+{_EXP}|-?(?:[0-9])+\\.(?:[0-9])*(?:{_EXP})?"
        f"|-?(?:[0-9])*\\.(?:[0-9])+(?:{_EXP})?)"
    ),
    "UINT_LIT": f"{_INT}[uU]",
    "INT_LIT": _INT,
    "IDENT": "[_a-zA-Z][_a-zA-Z0-9]*",
    "WHITESPACE": "[\t\n\x0c\r ]+",
    "COMMENT": "\\/\\/.*",
    "BOOL_LIT": "(?:false|true)",
    "NULL_LIT": "null",
    "IN": "in",
    "__ANON_0": "\\|\\|",
    "__ANON_1": "\\&\\&",
    "__ANON_2": "<=",
    "__ANON_3": ">=",
    "__ANON_4": "==",
    "__ANON_5": "!=",
    "BANG": "!",
    "COLON": ":",
    "COMMA": ",",
    "DOT": "\\.",
    "LBRACE": "\\{",
    "LESSTHAN": "<",
    "LPAR": "\\(",
    "LSQB": "\\[",
    "MINUS": "\\-",
    "MORETHAN": ">",
    "PERCENT": "%",
    "PLUS": "\\+",
    "QMARK": "\\?",
    "RBRACE": "\\}",
    "RPAR": "\\)",
    "RSQB": "\\]",
    "SLASH": "/",
    "STAR": "\\*",
}
"""cel.lark's terminals in the order lark's lexer tries them (`RESERVED` is unused by the
grammar, so lark drops it: reserved words are names)."""

_LIT_KINDS = frozenset(
    {"INT_LIT", "UINT_LIT", "FLOAT_LIT", "STRING_LIT", "MLSTRING_LIT", "BYTES_LIT", "BOOL_LIT"}
) | {"NULL_LIT"}

# lark's contextual lexer tries, after each token, the terminals the parser can take next:
_OPERAND: tuple[str, ...] = (  # where an operand is expected
    *("BYTES_LIT", "MLSTRING_LIT", "STRING_LIT", "FLOAT_LIT", "UINT_LIT", "INT_LIT", "IDENT"),
    *("WHITESPACE", "COMMENT", "BANG", "DOT", "LBRACE", "LPAR", "LSQB", "MINUS"),
    *("RBRACE", "RPAR", "RSQB"),  # (after an opener; they end no other token: f(), [], {})
)
_OPERATOR: tuple[str, ...] = (  # after an operand
    *("WHITESPACE", "COMMENT", "IN", "__ANON_0", "__ANON_1", "__ANON_2", "__ANON_3"),
    *("__ANON_4", "__ANON_5", "COLON", "COMMA", "DOT", "LBRACE", "LESSTHAN", "LPAR", "LSQB"),
    *("MINUS", "MORETHAN", "PERCENT", "PLUS", "QMARK", "RBRACE", "RPAR", "RSQB", "SLASH", "STAR"),
)

_WS = re.compile("[\t\n\x0c\r ]*")


_Scanner = tuple[Callable[[str, int], "re.Match[str] | None"], tuple[str, ...]]


def _scanner(names: tuple[str, ...]) -> _Scanner:
    """The terminals `names` in lark's order, after any whitespace (lark skips it as a token:
    the same, no other terminal starts with whitespace): a match function and the terminal
    of each group (the terminals have no groups of their own)."""
    names = tuple(n for n in names if n != "WHITESPACE")
    alts = "|".join(f"({TERMINALS[n]})" for n in names)
    return re.compile(f"{_WS.pattern}(?:{alts})", re.M).match, ("", *names)


# One lexer per place in the grammar, with the terminals lark's contextual lexer tries there
_M_OPERAND = _scanner(_OPERAND)  # an operand is expected
_M_OPERATOR = _scanner(_OPERATOR)  # after an operand
_M_NAME = _scanner(("IDENT", "WHITESPACE", "COMMENT"))  # after `.` and in `T{a: 1, b: 2}`
_M_FIELD = _scanner(("IDENT", "WHITESPACE", "COMMENT", "RBRACE"))  # after `T{`
_M_COLON = _scanner(("WHITESPACE", "COMMENT", "COLON"))  # after a field name in `T{a: 1}`
_M_ALL = _scanner(tuple(TERMINALS))  # every terminal: what an error reports

_BINARY = {
    "__ANON_0": (1, "||"),
    "__ANON_1": (2, "&&"),
    "LESSTHAN": (3, "<"),
    "__ANON_2": (3, "<="),
    "MORETHAN": (3, ">"),
    "__ANON_3": (3, ">="),
    "__ANON_4": (3, "=="),
    "__ANON_5": (3, "!="),
    "IN": (3, "in"),
    "PLUS": (4, "+"),
    "MINUS": (4, "-"),
    "STAR": (5, "*"),
    "SLASH": (5, "/"),
    "PERCENT": (5, "%"),
}
_UNARY = 6
_CLOSERS = frozenset({"RPAR", "RSQB", "RBRACE", "COMMA", "COLON", "$END"})

_Tok = tuple[str, str, int, int]  # kind, text, start offset, end offset


class _Str:
    """What `celstr` reads of a lark token."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value


# ---------------------------------------------------------------------------------------------
# The parse


class _Chain:
    """An open chain of one `&&` or `||` operator: its operands and operator offsets."""

    __slots__ = ("kind", "items", "shapes", "ops")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: list[_Node] = []
        self.shapes: list[Any] = []
        self.ops: list[int] = []


class _Frame:
    """An open construct: an expression in parentheses, arguments, a list, ... Binary and
    unary operators pending in it (`ops`) and its operands (`vals`: node, nesting shape)."""

    __slots__ = ("kind", "ops", "vals", "items", "start", "name", "operand", "phase")

    def __init__(self, kind: str, start: int = -1) -> None:
        self.kind = kind
        self.ops: list[tuple[int, str, int]] = []
        self.vals: list[tuple[Any, Any]] = []
        self.items: list[tuple[_Node, Any]] = []
        self.start = start
        self.name: _Tok | None = None
        self.operand: tuple[_Node, Any] | None = None
        self.phase = 0


class _Parser:
    """One parse. `shapes` measure nesting as lark's tree had it: in the first pass the height
    of each subtree; in the second (only when too deep) the rightmost node at each depth,
    which is where the old depth-first check stopped."""

    def __init__(self, src: str, mode: int = 0) -> None:
        self.src = src
        self.pos = 0
        self.ntok = 0
        self.mode = mode  # nesting shapes: none (0), heights (1), where (2)
        self.where = mode == 2
        self.rejected = False
        self.chains: dict[int, tuple[_Node, list[_Node]]] = {}
        self._nl: list[int] | None = None
        self._one_line = "\n" not in src

    # -- positions -----------------------------------------------------------------------------

    def linecol(self, offset: int) -> tuple[int, int]:
        if self._one_line:
            return 1, offset + 1
        if self._nl is None:
            self._nl = [i for i, c in enumerate(self.src) if c == "\n"]
        k = bisect.bisect_left(self._nl, offset)
        return k + 1, offset - (self._nl[k - 1] + 1 if k else 0) + 1

    def node(
        self,
        kind: str,
        start: int,
        end: int,
        kids: tuple[_Node, ...] = (),
        a: Any = None,
        b: Any = None,
    ) -> _Node:
        if self._one_line:
            return _Node(kind, 1, start + 1, kids, a, b, start, end)
        line, col = self.linecol(start)
        return _Node(kind, line, col, kids, a, b, start, end)

    def reject(
        self, msg: str, at: int, start: int, end: int, first: tuple[_Node, ...] = ()
    ) -> _Node:
        """A form the converter rejected: the error, once `first` (the subtrees it converted
        before deciding) showed theirs."""
        self.rejected = True
        line, col = self.linecol(start)
        n = _Node("!", line, col, first, msg, None, start, end)
        n.at = self.linecol(at)
        return n

    # -- nesting shapes ------------------------------------------------------------------------

    def inc(self, start: int, shapes: list[Any]) -> Any:
        """A node that opens a nesting level, over children of `shapes`."""
        if self.mode < 2:
            return self.mode and (1 + max(shapes) if shapes else 1)
        merged: list[int] = []
        for s in shapes:
            for i, v in enumerate(s):
                if i == len(merged):
                    merged.append(v)
                elif v > merged[i]:
                    merged[i] = v
        return [start, *merged[:MAX_NESTING]]

    # -- tokens --------------------------------------------------------------------------------

    def lex(self, scanner: _Scanner) -> _Tok:
        src = self.src
        match, kinds = scanner
        self.ntok += 1
        while True:
            m = match(src, self.pos)
            if m is None:
                pos = _WS.match(src, self.pos).end()  # type: ignore[union-attr]
                self.pos = pos
                if pos == len(src):
                    return "$END", "", pos, pos
                raise self.fail(pos)
            i = m.lastindex or 0  # (a terminal matched: its group)
            start, end = m.span(i)
            self.pos = end
            kind = kinds[i]
            if kind == "COMMENT":
                continue
            text = src[start:end]
            if kind == "IDENT":
                if text == "true" or text == "false":
                    kind = "BOOL_LIT"
                elif text == "null" and scanner is _M_OPERAND:
                    kind = "NULL_LIT"
            return kind, text, start, end

    def fail(self, pos: int) -> CelError:
        """No terminal of the place matches at `pos`: the token any terminal reads there is
        unexpected, or else the character."""
        m = _M_ALL[0](self.src, pos)
        if m is not None:
            return self.unexpected(("", m.group(), m.start(m.lastindex or 0), m.end()))
        line, col = self.linecol(pos)
        return CelError(f"syntax error: unexpected character {self.src[pos]!r}", line, col)

    def unexpected(self, tok: _Tok) -> CelError:
        if tok[0] == "$END":
            line, col = _linecol(self.src, len(self.src.rstrip()))
            return CelError("syntax error: unexpected end of expression", line, col)
        line, col = self.linecol(tok[2])
        return CelError(f"syntax error: unexpected token {tok[1]!r}", line, col)

    # -- operands ------------------------------------------------------------------------------

    def literal(self, tok: _Tok) -> _Node:
        kind, text, start, end = tok
        if kind == "INT_LIT":  # as celpy's IntType reads it
            if text[:2] == "0x":
                value: Any = int(text[2:], 16)
            elif text[:3] == "-0x":
                value = -int(text[3:], 16)
            else:
                value = int(text)
            if not -(2**63) <= value < 2**63:
                msg = f"integer literal {text} is out of the int64 range"
                return self.reject(msg, start, start, end)
            return self.node("lit", start, end, a=value, b="int")
        if kind == "STRING_LIT" or kind == "MLSTRING_LIT":
            return self.string(tok)
        if kind == "FLOAT_LIT":
            return self.node("lit", start, end, a=float(text), b="double")
        if kind == "BOOL_LIT":
            return self.node("lit", start, end, a=text == "true", b="bool")
        if kind == "NULL_LIT":
            return self.node("lit", start, end, a=None, b="null_type")
        if kind == "UINT_LIT":
            return self.reject(_REJECTED_FUNCTIONS["uint"], start, start, end)
        return self.reject("bytes literals are not supported", start, start, end)

    def string(self, tok: _Tok) -> _Node:
        """A string literal, decoded as celpy's `celstr` does (which drops the line breaks of
        a cooked triple-quoted string: its escape pattern's `.` does not match them)."""
        _, text, start, end = tok
        long = text[1:4] if text[0] in "rR" else text[:3]
        quote = 3 if long == '"""' or long == "'''" else 1
        if text[0] in "rR":
            value = text[1 + quote : -quote]
        elif "\\" not in text and "\n" not in text:
            value = text[quote:-quote]
        else:
            try:
                value = str(celstr(cast(Any, _Str(text))))
            except (ValueError, UnicodeError) as e:
                return self.reject(f"bad string literal: {e}", start, start, end)
        return self.node("lit", start, end, a=value, b="string")

    def finish_chain(self, c: _Chain) -> tuple[_Node, Any]:
        """`a || b || c ...` as a balanced tree (same value: the operators are associative),
        so a chain of thousands of terms is shallow for the checker and the closures."""
        n = self.build(c.kind, c.items, c.ops, 0, len(c.items))
        self.chains[id(n)] = (n, c.items)
        return n, self.inc(c.items[0].start, c.shapes)

    def build(self, kind: str, items: list[_Node], ops: list[int], lo: int, hi: int) -> _Node:
        start = items[lo].start
        if hi - lo <= _SHORT_CHAIN:  # left to right, as written (the lowering's fast paths)
            n = items[lo]
            for i in range(lo + 1, hi):
                r = items[i]
                at = ops[i - 1]
                line, col = (1, at + 1) if self._one_line else self.linecol(at)
                n = _Node(kind, line, col, (n, r), None, None, start, r.end)
            return n
        mid = (lo + hi) // 2
        left = self.build(kind, items, ops, lo, mid)
        right = self.build(kind, items, ops, mid, hi)
        line, col = self.linecol(ops[mid - 1])
        return _Node(kind, line, col, (left, right), None, None, start, items[hi - 1].end)

    def reduce(self, f: _Frame, prec: int) -> None:
        """Apply the pending operators of `f` that bind at least as tightly as `prec`."""
        ops, vals = f.ops, f.vals
        while ops and ops[-1][0] >= prec:
            p, op, at = ops.pop()
            if p == _UNARY:
                v, s = vals.pop()
                kind = "not" if op == "!" else "neg"
                vals.append((self.node(kind, at, v.end, (v,)), self.inc(at, [s])))
                continue
            r, rs = vals.pop()
            left, ls = vals.pop()
            if p <= 2:
                kind = "or" if p == 1 else "and"
                if type(r) is _Chain:
                    r, rs = self.finish_chain(r)
                if type(left) is _Chain and left.kind == kind:
                    c = left
                else:
                    if type(left) is _Chain:
                        left, ls = self.finish_chain(left)
                    c = _Chain(kind)
                    c.items.append(left)
                    c.shapes.append(ls)
                c.items.append(r)
                c.shapes.append(rs)
                c.ops.append(at)
                vals.append((c, None))
                continue
            n = _Node("bin", 0, 0, (left, r), op, None, left.start, r.end)
            n.line, n.col = self.linecol(at)
            vals.append((n, self.inc(left.start, [ls, rs])))

    def done(self, f: _Frame) -> tuple[_Node, Any]:
        """The expression of `f`, complete."""
        self.reduce(f, 0)
        v, s = f.vals.pop()
        if type(v) is _Chain:
            return self.finish_chain(v)
        return v, s

    # -- calls and other constructs ------------------------------------------------------------

    def call(self, f: _Frame, end: int) -> tuple[_Node, Any]:
        assert f.name is not None
        _, fname, at, _ = f.name
        args = [a for a, _ in f.items]
        shape = self.inc(f.start, [s for _, s in f.items])
        if f.kind == "dotcall":
            return self.reject("leading-dot names are not supported", f.start, f.start, end), shape
        if f.kind == "call":
            if fname == "has":
                if len(args) != 1:
                    msg = "has() takes one field selection, e.g. has(call.args.path)"
                    return self.reject(msg, at, at, end), shape
                if args[0].kind != "select":
                    msg = "has() needs a field selection, e.g. has(call.args.path)"
                    return self.reject(msg, args[0].start, at, end, (args[0],)), shape
                n = self.node("has", at, end, (args[0],))
            else:
                n = self.node("call", at, end, tuple(args), a=fname)
            return n, shape
        assert f.operand is not None
        operand, os = f.operand
        start = operand.start
        shape = self.inc(start, [os, *(s for _, s in f.items)])
        if fname in _MACROS:
            if len(args) != 2:
                msg = f"{fname}() takes a variable and an expression (got {len(args)} arguments)"
                return self.reject(msg, at, start, end), shape
            var = args[0]
            if var.kind != "ident":
                msg = f"the first argument of {fname}() must be a variable name"
                return self.reject(msg, var.start, start, end, (var,)), shape
            n = self.node("macro", start, end, (operand, args[1]), a=fname, b=var.a)
        elif fname in ("reduce", "min"):
            return self.reject(_REJECTED_FUNCTIONS[fname], at, start, end), shape
        else:
            n = self.node("method", start, end, (operand, *args), a=fname)
        n.at = self.linecol(at)
        return n, shape

    def map_lit(self, f: _Frame, end: int) -> tuple[_Node, Any]:
        keys: list[str] = []
        vals: list[_Node] = []
        seen: list[_Node] = []
        shape = self.inc(f.start, [s for _, s in f.items])
        for i in range(0, len(f.items), 2):
            k, v = f.items[i][0], f.items[i + 1][0]
            seen.append(k)
            bad = None
            if k.kind != "lit" or not isinstance(k.a, str):
                bad = "map literal keys must be string literals"
            elif k.a in keys:
                bad = f"duplicate map key {k.a!r}"
            if bad is not None:
                return self.reject(bad, k.start, f.start, end, tuple(seen)), shape
            seen.append(v)
            keys.append(k.a)
            vals.append(v)
        return self.node("map", f.start, end, tuple(vals), a=tuple(keys)), shape

    def field_name(self) -> None:
        """`name :` in `T{name: value}`."""
        tok = self.lex(_M_NAME)
        if tok[0] != "IDENT":
            raise self.unexpected(tok)
        tok = self.lex(_M_COLON)
        if tok[0] != "COLON":
            raise self.unexpected(tok)

    # -- the loop ------------------------------------------------------------------------------

    def parse(self) -> tuple[_Node, Any]:
        frames = [_Frame("top")]
        f = frames[0]
        leaf: Any = [] if self.where else 0
        pending: _Tok | None = None
        operand = True  # an operand is expected (else an operator, a postfix or a closer)
        while True:
            if operand:
                tok = pending or self.lex(_M_OPERAND)
                pending = None
                kind = tok[0]
                if kind == "IDENT":
                    nxt = self.lex(_M_OPERATOR)
                    if nxt[0] == "LPAR":
                        f = self.open(frames, "call", tok[2])
                        f.name = tok
                        continue
                    f.vals.append((self.node("ident", tok[2], tok[3], a=tok[1]), leaf))
                    pending, operand = nxt, False
                elif kind in _LIT_KINDS:
                    f.vals.append((self.literal(tok), leaf))
                    operand = False
                elif kind == "BANG" or kind == "MINUS":
                    f.ops.append((_UNARY, tok[1], tok[2]))
                elif kind == "LPAR":
                    f = self.open(frames, "paren", tok[2])
                elif kind == "LSQB":
                    f = self.open(frames, "list", tok[2])
                elif kind == "LBRACE":
                    f = self.open(frames, "map", tok[2])
                elif kind == "DOT":
                    name = self.lex(_M_NAME)
                    if name[0] != "IDENT":
                        raise self.unexpected(name)
                    nxt = self.lex(_M_OPERATOR)
                    if nxt[0] == "LPAR":
                        f = self.open(frames, "dotcall", tok[2])
                        f.name = name
                        continue
                    msg = "leading-dot names are not supported"
                    f.vals.append((self.reject(msg, tok[2], tok[2], name[3]), leaf))
                    pending, operand = nxt, False
                elif (
                    kind == _EMPTY.get(f.kind)
                    and not f.vals
                    and not f.ops
                    and not f.items
                    and f.phase == 0
                ):  # `f()`, `[]`, `{}`
                    f, operand = self.end(frames, tok, None)
                else:
                    raise self.unexpected(tok)
                continue
            # after an operand
            tok = pending or self.lex(_M_OPERATOR)
            pending = None
            kind = tok[0]
            if kind in _BINARY:
                prec, op = _BINARY[kind]
                self.reduce(f, prec)
                f.ops.append((prec, op, tok[2]))
                operand = True
            elif kind == "DOT":
                name = self.lex(_M_NAME)
                if name[0] != "IDENT":
                    raise self.unexpected(name)
                nxt = self.lex(_M_OPERATOR)
                v, s = f.vals.pop()
                if nxt[0] == "LPAR":
                    f = self.open(frames, "method", v.start)
                    f.name, f.operand = name, (v, s)
                    operand = True
                    continue
                n = self.node("select", v.start, name[3], (v,), a=name[1])
                n.at = self.linecol(name[2])
                f.vals.append((n, self.inc(v.start, [s])))
                pending = nxt
            elif kind == "LSQB":
                v, s = f.vals.pop()
                f = self.open(frames, "index", v.start)
                f.operand = (v, s)
                operand = True
            elif kind == "LBRACE":
                v, s = f.vals.pop()
                f = self.open(frames, "object", v.start)
                f.operand = (v, s)
                tok = self.lex(_M_FIELD)
                if tok[0] == "RBRACE":
                    f, operand = self.end(frames, tok, None)
                    continue
                if tok[0] != "IDENT":
                    raise self.unexpected(tok)
                tok = self.lex(_M_COLON)
                if tok[0] != "COLON":
                    raise self.unexpected(tok)
                operand = True
            elif kind == "QMARK" and f.kind != "then":
                cond = self.done(f)
                f = self.open(frames, "then", -1)
                f.items.append(cond)
                operand = True
            elif kind in _CLOSERS:
                while f.kind == "else":  # `c ? a : b` ends with the expression around it
                    e, es = self.done(f)
                    frames.pop()
                    (c, cs), (t, ts) = f.items
                    f = frames[-1]
                    n = self.node("cond", c.start, e.end, (c, t, e))
                    f.vals.append((n, self.inc(c.start, [cs, ts, es])))
                if f.kind == "top":
                    if kind != "$END":
                        raise self.unexpected(tok)
                    return self.done(f)
                f, operand = self.end(frames, tok, self.done(f))
            else:
                raise self.unexpected(tok)

    def open(self, frames: list[_Frame], kind: str, start: int) -> _Frame:
        f = _Frame(kind, start)
        frames.append(f)
        return f

    def end(
        self, frames: list[_Frame], tok: _Tok, value: tuple[_Node, Any] | None
    ) -> tuple[_Frame, bool]:
        """`tok`, a closer, after the expression `value` (None: right after the opener) in the
        innermost construct: the construct ends (an operand follows it) or takes another
        expression (an operand is expected)."""
        f = frames[-1]
        kind, fk, end = tok[0], f.kind, tok[3]
        if value is not None:
            f.items.append(value)
        out: tuple[_Node, Any]
        if fk == "paren" and kind == "RPAR":
            assert value is not None
            v, s = value
            v.start, v.end = f.start, end
            out = v, self.inc(f.start, [s])
        elif fk in ("call", "dotcall", "method") and (kind == "RPAR" or kind == "COMMA"):
            if kind == "COMMA":
                f.ops, f.vals = [], []
                return f, True
            out = self.call(f, end)
        elif fk == "list" and (kind == "RSQB" or kind == "COMMA"):
            if kind == "COMMA":
                f.ops, f.vals = [], []
                return f, True
            kids = tuple(n for n, _ in f.items)
            out = self.node("list", f.start, end, kids), self.inc(f.start, [s for _, s in f.items])
        elif fk == "index" and kind == "RSQB":
            assert f.operand is not None and value is not None
            (v, s), (i, si) = f.operand, value
            out = self.node("index", v.start, end, (v, i)), self.inc(v.start, [s, si])
        elif fk == "map" and f.phase == 0 and kind == "COLON" and value is not None:
            f.ops, f.vals, f.phase = [], [], 1
            return f, True
        elif fk == "map" and (kind == "RBRACE" or kind == "COMMA") and f.phase == 1:
            f.phase = 0
            if kind == "COMMA":
                f.ops, f.vals = [], []
                return f, True
            out = self.map_lit(f, end)
        elif fk == "map" and kind == "RBRACE" and value is None:
            out = self.map_lit(f, end)
        elif fk == "object" and (kind == "RBRACE" or kind == "COMMA"):
            if kind == "COMMA":
                self.field_name()
                f.ops, f.vals = [], []
                return f, True
            assert f.operand is not None
            v, s = f.operand
            msg = "message construction is not supported"
            out = (
                self.reject(msg, v.start, v.start, end),
                self.inc(v.start, [s, *(s for _, s in f.items)]),
            )
        elif fk == "then" and kind == "COLON":
            frames.pop()
            f2 = self.open(frames, "else", -1)
            f2.items = f.items
            return f2, True
        else:
            raise self.unexpected(tok)
        frames.pop()
        parent = frames[-1]
        parent.vals.append(out)
        return parent, False


_EMPTY = {"call": "RPAR", "dotcall": "RPAR", "method": "RPAR", "list": "RSQB", "map": "RBRACE"}


def _first_rejected(root: _Node) -> CelError | None:
    """The error the old converter raised first: it converted depth first, left to right,
    each rejected form after the subtrees it converted before deciding."""
    stack: list[tuple[_Node, bool]] = [(root, False)]
    while stack:
        n, seen = stack.pop()
        if seen:
            assert n.at is not None
            return CelError(n.a, *n.at)
        if n.kind == "!":
            stack.append((n, True))
        stack.extend((k, False) for k in reversed(n.kids))
    return None


class Parsed:
    """A parsed `when` (or one of its clauses): the source and the AST."""

    __slots__ = ("source", "root", "_chains")

    def __init__(self, source: str, root: _Node, chains: dict[int, tuple[_Node, list[_Node]]]):
        self.source = source
        self.root = root
        self._chains = chains

    def text(self) -> str:
        return self.source[self.root.start : self.root.end]

    def chain(self) -> list[_Node] | None:
        """The operands of a chain of one `&&` or `||` at the top, as written."""
        entry = self._chains.get(id(self.root))
        return entry[1] if entry is not None and entry[0] is self.root else None


def parse(source: str) -> Parsed:
    """Parse with cel-python's grammar; a syntax error is a `CelError` at its position, and
    so is a source longer than `MAX_SOURCE_LENGTH` or nested deeper than `MAX_NESTING`, and
    a form this module rejects."""
    if len(source) > MAX_SOURCE_LENGTH:
        line, col = _linecol(source, MAX_SOURCE_LENGTH)
        raise CelError(
            f"expression too long: {len(source):,} characters, the limit is "
            f"{MAX_SOURCE_LENGTH:,}; split it into rules",
            line,
            col,
        )
    p = _Parser(source)
    root, _ = p.parse()
    # a level has a token of its own: a parse of few tokens cannot be too deep
    if p.ntok > MAX_NESTING and _Parser(source, 1).parse()[1] > MAX_NESTING:
        q = _Parser(source, 2)
        _, deepest = q.parse()
        line, col = q.linecol(deepest[MAX_NESTING])
        raise CelError(
            f"expression nested too deeply: more than {MAX_NESTING} levels of "
            "parentheses, operators, calls or macros; split it into rules or clauses",
            line,
            col,
        )
    if p.rejected:
        e = _first_rejected(root)
        assert e is not None
        raise e
    return Parsed(source, root, p.chains)


# ---------------------------------------------------------------------------------------------
# Clauses, for `policy explain` and the tool index


def clauses(tree: Parsed) -> list[tuple[str, Parsed]]:
    """Top-level `&&` conjuncts (or, failing that, `||` disjuncts) with their source text.

    Outer parentheses are looked through (a parenthesized chain inside is one clause); a
    single clause is the whole expression. The clauses can be passed to `check`/`lower`
    like whole expressions (they share the AST).
    """
    items = tree.chain()
    if items is None:
        return [(tree.text(), tree)]
    src, chains = tree.source, tree._chains
    return [(src[i.start : i.end], Parsed(src, i, chains)) for i in items]


def conjuncts(tree: Parsed) -> list[tuple[str, Parsed]]:
    """Top-level `&&` conjuncts only: each must hold for the expression to be true (a rule
    may be indexed or skipped on one). An `||` at the top is one clause: the whole."""
    if tree.root.kind == "or":
        return [(tree.text(), tree)]
    return clauses(tree)
