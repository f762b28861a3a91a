"""CEL `when` expressions: parse, type-check, cost-estimate and lower to plain Python closures.

Nothing on the decision path interprets CEL source. At compile time a `when` is parsed with
cel-python's own grammar, checked against `schema` (the one declaration of what CEL sees),
costed, and lowered to a closure `fn(ctx)` over plain values (str, int, float, bool, tuple/list,
dict, None). cel-python (`celpy`) stays the reference semantics: `reference_evaluate` runs the
same source through celpy, and the differential tests prove both agree, errors included.

Where celpy and the CEL spec differ, celpy wins, because it is the reference we can run. Where
celpy is plainly broken for a form, `check` rejects that form instead (each rejection below says
why), so a checked expression means the same thing in both evaluators:

* uint, bytes, timestamps, durations, `type()`, `dyn()`, messages, `.name` lookups: no fact has
  these types, and celpy's handling of several is incomplete.
* `bool(x)`: celpy's is not CEL's (`bool("5")` is a bool holding 5 that equals neither `true`
  nor `false`).
* `string()` of a bool, null, list, map or dyn: celpy renders Python reprs (`string(true)` is
  `"True"`, `string([1])` is `"ListType([IntType(1)])"`).
* double arithmetic: celpy's `+ - *` on doubles return untyped Python floats, so division by
  zero is `+inf` for `2.0 / 0.0` (even `-1.0 / 0.0`) but an error for `(1.0 + 1.0) / (0.0 + 0.0)`.
* arithmetic and `string()` on dyn values: celpy leaks Python semantics (`true + 1 == 2`).
  Convert first (`int(call.args.n) + 1`); comparisons on dyn values are fine.
* equality and ordering between different static types: celpy is asymmetric (`true == 1` is
  true, `1 == true` an error; `1.5 < 2` works, `2 < 1.5` is an error). Both sides must have the
  same type, or one side is `dyn` and the other a scalar. Lists and maps compare only with the
  same list/map type (celpy builds `+` results as plain Python lists whose comparisons differ).
* lists are unordered (`[1] + [2] < [3]` is true in celpy), strings are not indexable and not
  iterable, `in` needs a list or map, `.contains()` is a string method (use `in` for lists),
  global functions are not methods and receiver functions are not globals.
* macros other than `exists`, `all`, `exists_one`, `map(x, e)`, `filter(x, e)` (3-argument
  `map`, celpy's `reduce`/`min`): celpy crashes or they are not CEL.
* map literals must be constant and keyed by string literals (celpy stores errors inside maps).
* `matches` with a constant pattern that RE2 rejects is an error at check time.

The celpy quirks that remain observable in the accepted subset are reproduced, e.g. the three
kinds of failure (an error *value* that `&&`/`||` absorb; an error *raised* out of `map`,
`filter` and `exists_one` bodies that only `exists`/`all` bodies absorb; a raw Python exception,
which only a `?:` branch turns back into a value when it is a TypeError), macros that never stop
early, `size(null) == 0`, negative list indexes, `has()` being false whenever its operand fails,
and `.contains()` failing on strings built by `+`. `matches` runs on RE2 through google-re2,
the engine celpy itself calls, so patterns mean the same thing and run in linear time.

Closures take `(ctx, loc=None)`: `ctx` is the runtime's context object (attributes `call`,
`flow`, `agent`, `session`, `archetype`, `vars`, `witness`), `loc` a list holding the
comprehension variables of the current evaluation, so one closure is safe to run from many
threads at once.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import lark
import re2
from celpy import celtypes
from celpy.celparser import CELParseError, tree_dump
from celpy.evaluation import celstr
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from mcp_defense.policy import schema

__all__ = [
    "COST_LIMIT",
    "CelEnv",
    "CelError",
    "CelEvalError",
    "Lowered",
    "check",
    "clauses",
    "estimate_cost",
    "lower",
    "parse",
    "reference_evaluate",
]

COST_LIMIT = 100_000
"""Largest `estimate_cost` a `when` may have (see `estimate_cost` for the units)."""

MAX_LIST_SIZE = 256
"""Assumed maximum size of every list fact and dyn collection, for cost estimation."""


# ---------------------------------------------------------------------------------------------
# Errors


class CelError(Exception):
    """A static problem in an expression: syntax, types, unsupported forms. Positions are
    1-based and relative to the expression source."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column


class CelEvalError(Exception):
    """A runtime evaluation error (no such key, division by zero, no overload on a dyn, ...).

    Lowered closures raise exactly this class for what celpy treats as an error *value*
    (absorbed by `false && e`, `true || e`, `exists`, `all`). Private subclasses mark failures
    celpy raises instead of returning, which absorb less; callers only need this class.
    """


class _HardError(CelEvalError):
    """celpy raised a CELEvalError (a failing `map`/`filter`/`exists_one` body): only the body
    of an enclosing `exists`/`all` absorbs it."""


class _FatalTypeError(CelEvalError):
    """celpy raised a raw TypeError (a macro over something not iterable): only the branch of an
    enclosing ternary turns it back into an error value."""


class _FatalError(CelEvalError):
    """celpy raised some other raw exception (`int()` of an infinite double): nothing absorbs it."""


_SOFT, _HARD, _FTYPE, _FATAL = 1, 2, 4, 8
_NONSOFT = _HARD | _FTYPE | _FATAL
_CLASS_BITS: dict[type, int] = {
    CelEvalError: _SOFT,
    _HardError: _HARD,
    _FatalTypeError: _FTYPE,
    _FatalError: _FATAL,
}


def _soft(msg: str) -> CelEvalError:
    return CelEvalError(msg)


# ---------------------------------------------------------------------------------------------
# Types: scalars are CEL names; ("list", T) and ("map", T) with string keys; None as an element
# type means "empty literal, unifies with anything".

_T = Any
_SCALARS = frozenset({"bool", "int", "double", "string", "null_type"})
_RECORDS = frozenset(schema.RECORDS)
_NO = object()


def _parse_type(s: str) -> _T:
    s = s.strip()
    if s.startswith("list<") and s.endswith(">"):
        return ("list", _parse_type(s[5:-1]))
    if s.startswith("map<") and s.endswith(">"):
        key, val = s[4:-1].split(",", 1)
        if key.strip() != "string":
            raise ValueError(f"map keys must be strings: {s}")
        return ("map", _parse_type(val))
    return s


def _tname(t: _T) -> str:
    if isinstance(t, tuple):
        inner = "dyn" if t[1] is None else _tname(t[1])
        return f"list<{inner}>" if t[0] == "list" else f"map<string,{inner}>"
    return t


def _unify(a: _T, b: _T) -> _T:
    if a == b:
        return a
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0]:
        inner = _unify(a[1], b[1])
        return _NO if inner is _NO else (a[0], inner)
    return _NO


def _join(a: _T, b: _T) -> _T:
    """Type of a value that is either `a` or `b` (list elements, ternary branches)."""
    u = _unify(a, b)
    if u is not _NO:
        return u
    if (a == "dyn" and b in _SCALARS) or (b == "dyn" and a in _SCALARS):
        return "dyn"
    return _NO


def _dynfree(t: _T) -> bool:
    if t == "dyn":
        return False
    return _dynfree(t[1]) if isinstance(t, tuple) else True


def _eq_ok(a: _T, b: _T) -> bool:
    if a in _RECORDS or b in _RECORDS:
        return False
    if _unify(a, b) is not _NO:
        return True
    return (a == "dyn" and (b in _SCALARS or b == "dyn")) or (b == "dyn" and a in _SCALARS)


def _is_list(t: _T) -> bool:
    return isinstance(t, tuple) and t[0] == "list"


def _is_map(t: _T) -> bool:
    return isinstance(t, tuple) and t[0] == "map"


# ---------------------------------------------------------------------------------------------
# Environment


_FUNCTIONS: dict[str, schema.Function] = {f.name: f for f in schema.FUNCTIONS}
_CONVERSIONS = frozenset({"int", "double", "string"})
_STRING_METHODS = frozenset({"startsWith", "endsWith", "contains", "matches"})
_MACROS = frozenset({"exists", "all", "exists_one", "map", "filter"})
_REJECTED_FUNCTIONS: dict[str, str] = {
    "bool": "celpy's bool() is not CEL's (bool(\"5\") is neither true nor false); "
    "compare the string instead",
    "uint": "uint is not supported: no fact is unsigned and celpy never compares uint with int",
    "bytes": "bytes are not supported: no fact is bytes",
    "timestamp": "timestamps are not supported: no fact is a timestamp",
    "duration": "durations are not supported: no fact is a duration",
    "type": "type() is not supported",
    "dyn": "dyn() is not supported: call.args values are already dyn",
    "list": "list() is not supported",
    "map": "map() is not supported",
    "null_type": "null_type() is not supported",
    "lowerAscii": "lowerAscii() is not available in cel-python 0.5",
    "upperAscii": "upperAscii() is not available in cel-python 0.5",
    "reduce": "reduce() is a cel-python extension, not CEL",
    "min": "min() is a cel-python extension, not CEL",
}


class CelEnv:
    """What an expression may name: variables in `scope`, `vars.<name>` for each policy variable,
    and the functions of `schema.FUNCTIONS` (with `functions` binding their implementations;
    receiver functions are called as `impl(receiver, *args)`)."""

    def __init__(
        self,
        scope: frozenset[str],
        vars_fields: Sequence[str] = (),
        functions: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        unknown = set(scope) - set(schema.VARIABLES)
        if unknown:
            raise ValueError(f"unknown CEL variables in scope: {sorted(unknown)}")
        extra = set(functions or ()) - set(_FUNCTIONS)
        if extra:
            raise ValueError(f"implementations for undeclared functions: {sorted(extra)}")
        self.scope = frozenset(scope)
        self.vars_fields = tuple(vars_fields)
        self.functions: dict[str, Callable[..., Any]] = dict(functions or {})
        self._fields: dict[str, dict[str, _T]] = {
            r: {f.name: _parse_type(f.type) for f in fs} for r, fs in schema.RECORDS.items()
        }
        self._fields["Vars"] = {name: "string" for name in self.vars_fields}

    def field_type(self, record: str, name: str) -> _T | None:
        return self._fields.get(record, {}).get(name)

    def fields(self, record: str) -> tuple[str, ...]:
        return tuple(self._fields.get(record, {}))


# ---------------------------------------------------------------------------------------------
# Parsing: celpy's grammar, then a compact AST with positions


_SRC_ATTR = "_mcpd_cel_source"
_PARSER: lark.Lark | None = None


def _ambiguous_literals(t: lark.Token) -> lark.Token:
    """celpy's IDENT callback, keeping the token position (celpy's drops it)."""
    if t.value in ("true", "false"):
        return lark.Token.new_borrow_pos("BOOL_LIT", t.value, t)
    return t


def _parser() -> lark.Lark:
    """A Lark parser over celpy's own `cel.lark`, with celpy's options: the same trees."""
    global _PARSER
    if _PARSER is None:
        import celpy.celparser

        grammar = (Path(celpy.celparser.__file__).parent / "cel.lark").read_text()
        _PARSER = lark.Lark(
            grammar,
            parser="lalr",
            start="expr",
            g_regex_flags=re.M,
            lexer_callbacks={"IDENT": _ambiguous_literals},
            propagate_positions=True,
            maybe_placeholders=False,
            priority="invert",
            cache=True,
        )  # LALR tables cached on disk
    return _PARSER


def _linecol(src: str, offset: int) -> tuple[int, int]:
    line = src.count("\n", 0, offset) + 1
    return line, offset - (src.rfind("\n", 0, offset) + 1) + 1


def parse(source: str) -> lark.Tree:
    """Parse with cel-python's grammar; a syntax error is a `CelError` at its position."""
    try:
        tree = _parser().parse(source)
    except UnexpectedCharacters as e:
        ch = source[e.pos_in_stream] if 0 <= e.pos_in_stream < len(source) else ""
        raise CelError(f"syntax error: unexpected character {ch!r}", e.line, e.column) from None
    except UnexpectedEOF:
        line, col = _linecol(source, len(source.rstrip()))
        raise CelError("syntax error: unexpected end of expression", line, col) from None
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            line, col = _linecol(source, len(source.rstrip()))
            raise CelError("syntax error: unexpected end of expression", line, col) from None
        what = "reserved word" if tok.type == "RESERVED" else "token"
        raise CelError(f"syntax error: unexpected {what} {tok.value!r}", e.line, e.column) from None
    except LarkError as e:
        raise CelError(f"syntax error: {str(e).splitlines()[0]}", 1, 1) from None
    setattr(tree, _SRC_ATTR, source)
    return tree


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


_BIN_OPS = {
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_in": "in",
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
}


class _Converter:
    """lark Tree (celpy's shape) → `_Node`."""

    def __init__(self, src: str | None) -> None:
        self.src = src

    def pos(self, t: lark.Tree | lark.Token) -> tuple[int, int, int, int]:
        if isinstance(t, lark.Token):
            line, col, start, end = t.line, t.column, t.start_pos, t.end_pos
        else:
            m = t.meta
            if getattr(m, "empty", True):
                return 1, 1, -1, -1
            line, col, start, end = m.line, m.column, m.start_pos, m.end_pos
        return (line or 1, col or 1, -1 if start is None else start, -1 if end is None else end)

    def node(
        self,
        kind: str,
        at: lark.Tree | lark.Token,
        kids: tuple[_Node, ...] = (),
        a: Any = None,
        b: Any = None,
    ) -> _Node:
        line, col, start, end = self.pos(at)
        return _Node(kind, line, col, kids, a, b, start, end)

    def op_pos(self, left: lark.Tree, right: lark.Tree) -> tuple[int, int] | None:
        """Where the operator between two operands is (the grammar drops operator tokens)."""
        if self.src is None:
            return None
        i = self.pos(left)[3]
        j = self.pos(right)[2]
        if i < 0 or j < 0:
            return None
        while i < j:
            if self.src[i].isspace():
                i += 1
            elif self.src.startswith("//", i):
                nl = self.src.find("\n", i)
                i = j if nl < 0 else nl + 1
            else:
                return _linecol(self.src, i)
        return None

    def err(self, msg: str, at: lark.Tree | lark.Token) -> CelError:
        line, col, _, _ = self.pos(at)
        return CelError(msg, line, col)

    def conv(self, t: lark.Tree) -> _Node:
        data = t.data
        ch = t.children
        if (
            data
            in (
                "expr",
                "conditionalor",
                "conditionaland",
                "relation",
                "addition",
                "multiplication",
                "unary",
                "member",
                "primary",
            )
            and len(ch) == 1
        ):
            return self.conv(ch[0])
        if data == "expr":
            return self.node("cond", t, (self.conv(ch[0]), self.conv(ch[1]), self.conv(ch[2])))
        if data in ("conditionalor", "conditionaland"):
            left, right = self.conv(ch[0]), self.conv(ch[1])
            n = self.node("or" if data == "conditionalor" else "and", t, (left, right))
            self._at_op(n, ch[0], ch[1])
            return n
        if data in ("relation", "addition", "multiplication"):
            op_tree, right_tree = ch
            left_tree = op_tree.children[0]
            n = self.node(
                "bin", t, (self.conv(left_tree), self.conv(right_tree)), a=_BIN_OPS[op_tree.data]
            )
            self._at_op(n, left_tree, right_tree)
            return n
        if data == "unary":
            op, operand = ch
            return self.node("not" if op.data == "unary_not" else "neg", t, (self.conv(operand),))
        if data == "member_dot":
            operand, name = ch
            n = self.node("select", t, (self.conv(operand),), a=str(name))
            n.at = self.pos(name)[:2]
            return n
        if data == "member_dot_arg":
            operand, name = ch[0], ch[1]
            args = self.args(ch[2] if len(ch) > 2 else None)
            return self.method(t, operand, name, args)
        if data == "member_index":
            return self.node("index", t, (self.conv(ch[0]), self.conv(ch[1])))
        if data == "member_object":
            raise self.err("message construction is not supported", t)
        if data in ("dot_ident", "dot_ident_arg"):
            raise self.err("leading-dot names are not supported", t)
        if data == "ident_arg":
            name = ch[0]
            args = ch[1].children if len(ch) > 1 else []
            return self.call(t, name, args)
        if data == "ident":
            return self.node("ident", t, a=str(ch[0]))
        if data == "paren_expr":
            n = self.conv(ch[0])
            n.start, n.end = self.pos(t)[2:]
            return n
        if data == "list_lit":
            kids = tuple(self.conv(e) for e in ch[0].children) if ch else ()
            return self.node("list", t, kids)
        if data == "map_lit":
            return self.map_lit(t)
        if data == "literal":
            return self.literal(t)
        raise self.err(f"unsupported syntax {data!r}", t)

    def _at_op(self, n: _Node, left: lark.Tree, right: lark.Tree) -> None:
        p = self.op_pos(left, right)
        if p is not None:
            n.line, n.col = p

    def args(self, exprlist: lark.Tree | None) -> list[lark.Tree]:
        return list(exprlist.children) if exprlist is not None else []

    def method(
        self, t: lark.Tree, operand: lark.Tree, name: lark.Token, args: list[lark.Tree]
    ) -> _Node:
        mname = str(name)
        if mname in _MACROS:
            if len(args) != 2:
                raise self.err(
                    f"{mname}() takes a variable and an expression (got {len(args)} arguments)",
                    name,
                )
            var = self.conv(args[0])
            if var.kind != "ident":
                raise self.err(f"the first argument of {mname}() must be a variable name", args[0])
            n = self.node("macro", t, (self.conv(operand), self.conv(args[1])), a=mname, b=var.a)
            n.at = self.pos(name)[:2]
            return n
        if mname in ("reduce", "min"):
            raise self.err(_REJECTED_FUNCTIONS[mname], name)
        n = self.node("method", t, (self.conv(operand), *(self.conv(a) for a in args)), a=mname)
        n.at = self.pos(name)[:2]
        return n

    def call(self, t: lark.Tree, name: lark.Token, args: list[lark.Tree]) -> _Node:
        fname = str(name)
        if fname == "has":
            if len(args) != 1:
                raise self.err("has() takes one field selection, e.g. has(call.args.path)", name)
            operand = self.conv(args[0])
            if operand.kind != "select":
                raise self.err("has() needs a field selection, e.g. has(call.args.path)", args[0])
            n = self.node("has", name, (operand,))
        else:
            n = self.node("call", name, tuple(self.conv(a) for a in args), a=fname)
        n.start, n.end = self.pos(t)[2:]
        return n

    def map_lit(self, t: lark.Tree) -> _Node:
        keys: list[str] = []
        vals: list[_Node] = []
        if t.children:
            items = t.children[0].children
            for k_tree, v_tree in zip(items[0::2], items[1::2], strict=True):
                k = self.conv(k_tree)
                if k.kind != "lit" or not isinstance(k.a, str):
                    raise self.err("map literal keys must be string literals", k_tree)
                if k.a in keys:
                    raise self.err(f"duplicate map key {k.a!r}", k_tree)
                keys.append(k.a)
                vals.append(self.conv(v_tree))
        return self.node("map", t, tuple(vals), a=tuple(keys))

    def literal(self, t: lark.Tree) -> _Node:
        tok = t.children[0]
        kind = tok.type
        text = str(tok)
        if kind == "INT_LIT":
            try:
                value: Any = int(celtypes.IntType(text))
            except ValueError:
                raise self.err(f"integer literal {text} is out of the int64 range", tok) from None
            return self.node("lit", t, a=value, b="int")
        if kind == "FLOAT_LIT":
            return self.node("lit", t, a=float(text), b="double")
        if kind in ("STRING_LIT", "MLSTRING_LIT"):
            try:
                value = str(celstr(tok))
            except (ValueError, UnicodeError) as e:
                raise self.err(f"bad string literal: {e}", tok) from None
            return self.node("lit", t, a=value, b="string")
        if kind == "BOOL_LIT":
            return self.node("lit", t, a=text == "true", b="bool")
        if kind == "NULL_LIT":
            return self.node("lit", t, a=None, b="null_type")
        if kind == "UINT_LIT":
            raise self.err(_REJECTED_FUNCTIONS["uint"], tok)
        raise self.err(f"{kind.lower().replace('_lit', '')} literals are not supported", tok)


def _convert(tree: lark.Tree) -> _Node:
    return _Converter(getattr(tree, _SRC_ATTR, None)).conv(tree)


# ---------------------------------------------------------------------------------------------
# Type checking


_ORDERED = frozenset({"int", "double", "string", "bool"})


class _Checker:
    def __init__(self, env: CelEnv) -> None:
        self.env = env

    def err(self, n: _Node, msg: str) -> CelError:
        return CelError(msg, n.line, n.col)

    def err_name(self, n: _Node, msg: str) -> CelError:
        """An error about the name in `x.name` (unknown field, method, ...): point at it."""
        line, col = n.at or (n.line, n.col)
        return CelError(msg, line, col)

    def check(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        t = getattr(self, "k_" + n.kind)(n, scope)
        n.t = t
        return t

    def k_lit(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        return n.b

    def k_ident(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        name = n.a
        if name in scope:
            t, depth = scope[name]
            n.b = depth
            return t
        n.b = None
        if name in self.env.scope:
            return schema.VARIABLES[name]
        if name in schema.VARIABLES:
            raise self.err(
                n,
                f"{name!r} is not available here (available: {', '.join(sorted(self.env.scope))})",
            )
        if name in _FUNCTIONS or name in _CONVERSIONS:
            raise self.err(n, f"{name!r} is a function; call it")
        raise self.err(n, f"undeclared reference to {name!r}")

    def k_select(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        ot = self.check(n.kids[0], scope)
        name = n.a
        if ot in _RECORDS:
            ft = self.env.field_type(ot, name)
            if ft is None:
                if ot == "Vars":
                    raise self.err_name(
                        n,
                        f"undefined variable {name!r} (defined: "
                        f"{', '.join(self.env.vars_fields) or 'none'})",
                    )
                if any(f.name == name and f.receiver == ot for f in schema.FUNCTIONS):
                    raise self.err_name(n, f"{name} is a function; call it: {name}(...)")
                raise self.err_name(
                    n, f"no field {name!r} on {ot} (fields: {', '.join(self.env.fields(ot))})"
                )
            return ft
        if _is_map(ot):
            return "dyn" if ot[1] is None else ot[1]
        if ot == "dyn":
            return "dyn"
        raise self.err_name(n, f"{_tname(ot)} has no fields")

    def k_index(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        ot = self.check(n.kids[0], scope)
        it = self.check(n.kids[1], scope)
        if _is_list(ot):
            if it not in ("int", "dyn"):
                raise self.err(n.kids[1], f"list index must be an int, not {_tname(it)}")
            return "dyn" if ot[1] is None else ot[1]
        if _is_map(ot):
            if it not in ("string", "dyn"):
                raise self.err(n.kids[1], f"map key must be a string, not {_tname(it)}")
            return "dyn" if ot[1] is None else ot[1]
        if ot == "dyn":
            if it not in ("int", "string", "dyn"):
                raise self.err(n.kids[1], f"index must be an int or a string, not {_tname(it)}")
            return "dyn"
        if ot == "string":
            raise self.err(n, "strings cannot be indexed in CEL")
        raise self.err(n, f"{_tname(ot)} cannot be indexed")

    def k_has(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        self.check(n.kids[0], scope)
        return "bool"

    def _arg_ok(self, want: _T, got: _T) -> bool:
        return got == want or got == "dyn" and want not in _RECORDS

    def k_call(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        name = n.a
        ts = [self.check(k, scope) for k in n.kids]
        if name in _REJECTED_FUNCTIONS:
            raise self.err(n, _REJECTED_FUNCTIONS[name])
        if name == "size":
            self._arity(n, 1)
            return self._size(n, ts[0], n.kids[0])
        if name in _CONVERSIONS:
            self._arity(n, 1)
            return self._conversion_type(n, name, ts[0])
        if name == "matches":
            self._arity(n, 2)
            self._string_args(n, ts, n.kids)
            self._pattern(n.kids[1])
            return "bool"
        f = _FUNCTIONS.get(name)
        if f is None:
            if name in _STRING_METHODS:
                raise self.err(n, f"{name}() is a string method: s.{name}(...)")
            raise self.err(n, f"undeclared function {name!r}")
        if f.receiver is not None:
            raise self.err(
                n, f"{name}() is called on {f.receiver.lower()}: {f.receiver.lower()}.{name}(...)"
            )
        return self._sig(n, f, ts, n.kids)

    def _arity(self, n: _Node, k: int, offset: int = 0) -> None:
        got = len(n.kids) - offset
        if got != k:
            raise self.err(n, f"{n.a}() takes {k} argument{'s' if k != 1 else ''}, got {got}")

    def _sig(self, n: _Node, f: schema.Function, ts: list[_T], kids: Sequence[_Node]) -> _T:
        if len(ts) != len(f.params):
            raise self.err(
                n,
                f"{f.name}() takes {len(f.params)} argument"
                f"{'s' if len(f.params) != 1 else ''}, got {len(ts)}",
            )
        for want, got, k in zip(f.params, ts, kids, strict=True):
            if not self._arg_ok(_parse_type(want), got):
                raise self.err(k, f"{f.name}() expects {want}, got {_tname(got)}")
        return _parse_type(f.result)

    def _size(self, n: _Node, t: _T, arg: _Node) -> _T:
        if t == "string" or t == "dyn" or _is_list(t) or _is_map(t):
            return "int"
        raise self.err(arg, f"size() needs a string, list or map, not {_tname(t)}")

    def _conversion_type(self, n: _Node, name: str, t: _T) -> _T:
        allowed = {
            "int": ("int", "double", "string", "bool", "dyn"),
            "double": ("int", "double", "string", "bool", "dyn"),
            "string": ("string", "int", "double"),
        }[name]
        if t not in allowed:
            why = ""
            if name == "string":
                why = (
                    " (celpy renders bool, null, lists, maps and dyn values as Python "
                    "reprs such as 'True')"
                )
            raise self.err(n, f"{name}() of {_tname(t)} is not supported{why}")
        return name

    def _string_args(self, n: _Node, ts: list[_T], kids: Sequence[_Node]) -> None:
        for t, k in zip(ts, kids, strict=True):
            if t not in ("string", "dyn"):
                raise self.err(k, f"{n.a}() needs strings, got {_tname(t)}")

    def _pattern(self, k: _Node) -> None:
        if k.kind == "lit" and isinstance(k.a, str):
            try:
                _re2_compile(k.a)
            except Exception as e:  # re2.error has no stable public name
                raise self.err(k, f"invalid RE2 pattern: {_re2_msg(e)}") from None

    def k_method(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        name = n.a
        rt = self.check(n.kids[0], scope)
        ts = [self.check(k, scope) for k in n.kids[1:]]
        f = _FUNCTIONS.get(name)
        if f is not None:
            if f.receiver is None:
                raise self.err_name(n, f"{name}() is a global function: {name}(...)")
            if rt != f.receiver:
                raise self.err_name(
                    n, f"{name}() is called on {f.receiver.lower()}, not on {_tname(rt)}"
                )
            return self._sig(n, f, ts, n.kids[1:])
        if name in _STRING_METHODS:
            if len(ts) != 1:
                raise self.err_name(n, f"{name}() takes 1 argument, got {len(ts)}")
            if rt not in ("string", "dyn"):
                hint = (
                    "; use `x in list`"
                    if name == "contains" and (_is_list(rt) or _is_map(rt))
                    else ""
                )
                raise self.err_name(
                    n, f"{name}() is a string method, not one of {_tname(rt)}{hint}"
                )
            self._string_args(n, ts, n.kids[1:])
            if name == "matches":
                self._pattern(n.kids[1])
            return "bool"
        if name == "size":
            if ts:
                raise self.err_name(n, f"size() takes no arguments here, got {len(ts)}")
            return self._size(n, rt, n.kids[0])
        if name in _REJECTED_FUNCTIONS:
            raise self.err_name(n, _REJECTED_FUNCTIONS[name])
        raise self.err_name(n, f"undeclared method {name!r} on {_tname(rt)}")

    def k_macro(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        rt = self.check(n.kids[0], scope)
        if _is_list(rt):
            vt = "dyn" if rt[1] is None else rt[1]
        elif _is_map(rt):
            vt = "string"
        elif rt == "dyn":
            vt = "dyn"
        else:
            raise self.err_name(n, f"{n.a}() needs a list or map, not {_tname(rt)}")
        depth = 1 + max((d for _, d in scope.values()), default=-1)
        n.depth = depth
        inner = dict(scope)
        inner[n.b] = (vt, depth)
        bt = self.check(n.kids[1], inner)
        if n.a == "map":
            return ("list", bt)
        if bt not in ("bool", "dyn"):
            raise self.err(n.kids[1], f"the {n.a}() predicate must be a bool, not {_tname(bt)}")
        if n.a == "filter":
            return rt if _is_list(rt) else ("list", vt)
        return "bool" if bt == "bool" else "dyn"

    def k_list(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        et: _T = None
        for k in n.kids:
            t = self.check(k, scope)
            if t in _RECORDS:
                raise self.err(k, f"a {t} record cannot be put in a list")
            j = t if et is None else _join(et, t)
            if j is _NO:
                raise self.err(k, f"list elements must have one type: {_tname(et)} and {_tname(t)}")
            et = j
        return ("list", et)

    def k_map(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        vt: _T = None
        for k in n.kids:
            t = self.check(k, scope)
            if t in _RECORDS:
                raise self.err(k, f"a {t} record cannot be put in a map")
            j = t if vt is None else _join(vt, t)
            if j is _NO:
                raise self.err(k, f"map values must have one type: {_tname(vt)} and {_tname(t)}")
            vt = j
            if not self._static(k):
                raise self.err(k, "map literal values must be compile-time constants")
        return ("map", vt)

    def _static(self, n: _Node) -> bool:
        """Only literals, `vars` and `archetype` (constants at compile time)."""
        if n.kind == "ident":
            return n.b is None and n.a in ("vars", "archetype")
        if n.kind == "macro":
            return False
        return all(self._static(k) for k in n.kids)

    def k_not(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        t = self.check(n.kids[0], scope)
        if t not in ("bool", "dyn"):
            raise self.err(n, f"! needs a bool, not {_tname(t)}")
        return "bool"

    def k_neg(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        t = self.check(n.kids[0], scope)
        if t not in ("int", "double"):
            raise self.err(
                n,
                f"unary - needs an int or a double, not {_tname(t)}"
                + (" (convert dyn values first: -int(x))" if t == "dyn" else ""),
            )
        return t

    def k_and(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        return self._logic(n, scope, "&&")

    def k_or(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        return self._logic(n, scope, "||")

    def _logic(self, n: _Node, scope: dict[str, tuple[_T, int]], op: str) -> _T:
        ts = [self.check(k, scope) for k in n.kids]
        for t, k in zip(ts, n.kids, strict=True):
            if t not in ("bool", "dyn"):
                raise self.err(k, f"operands of {op} must be bool, not {_tname(t)}")
        return "bool" if ts == ["bool", "bool"] else "dyn"

    def k_cond(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        ct = self.check(n.kids[0], scope)
        if ct not in ("bool", "dyn"):
            raise self.err(n.kids[0], f"the ?: condition must be a bool, not {_tname(ct)}")
        a = self.check(n.kids[1], scope)
        b = self.check(n.kids[2], scope)
        if a in _RECORDS or b in _RECORDS:
            raise self.err(n, "records cannot be chosen with ?:")
        j = _join(a, b)
        if j is _NO:
            raise self.err(n, f"?: branches must have one type: {_tname(a)} and {_tname(b)}")
        return "dyn" if j is None else j

    def k_bin(self, n: _Node, scope: dict[str, tuple[_T, int]]) -> _T:
        op = n.a
        lt = self.check(n.kids[0], scope)
        rt = self.check(n.kids[1], scope)
        bad = CelError(
            f"found no matching overload for '{op}' applied to ({_tname(lt)}, {_tname(rt)})",
            n.line,
            n.col,
        )
        if op in ("==", "!="):
            if not _eq_ok(lt, rt):
                raise bad
            return "bool"
        if op in ("<", "<=", ">", ">="):
            if (
                (lt == rt and lt in _ORDERED)
                or (lt == "dyn" and rt in _ORDERED | {"dyn"})
                or (rt == "dyn" and lt in _ORDERED)
            ):
                return "bool"
            raise bad
        if op == "in":
            if _is_list(rt):
                et = "dyn" if rt[1] is None else rt[1]
                if rt[1] is None or _eq_ok(lt, et):
                    return "bool"
            elif _is_map(rt):
                if lt in ("string", "dyn"):
                    return "bool"
            elif rt == "dyn":
                if lt in _SCALARS or lt == "dyn":
                    return "bool"
            elif rt == "string":
                raise CelError(
                    "'in' needs a list or map; for substrings use s.contains(x)", n.line, n.col
                )
            raise bad
        # arithmetic
        if lt == "dyn" or rt == "dyn":
            raise CelError(
                f"arithmetic on dyn values is not supported: convert first, e.g. "
                f"int(x) {op} 1 (celpy leaks Python semantics: true + 1 == 2)",
                n.line,
                n.col,
            )
        if lt == "double" or rt == "double":
            raise CelError(
                "double arithmetic is not supported (celpy's results are untyped: "
                "2.0/0.0 is +inf but (1.0+1.0)/(0.0+0.0) an error)",
                n.line,
                n.col,
            )
        if lt == rt == "int":
            return "int"
        if op == "+":
            if lt == rt == "string":
                return "string"
            if _is_list(lt) and _is_list(rt):
                u = _unify(lt, rt)
                if u is not _NO:
                    if not _dynfree(u):
                        raise CelError(
                            "concatenating lists of dyn is not supported (celpy's "
                            "plain-list results compare differently)",
                            n.line,
                            n.col,
                        )
                    return u
        raise bad


# ---------------------------------------------------------------------------------------------
# RE2 (the engine celpy's `matches` uses)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _re2_compile(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def _re2_msg(e: BaseException) -> str:
    arg = e.args[0] if e.args else e
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


@lru_cache(maxsize=256)
def _re2_cached(pattern: str) -> Any:
    return _re2_compile(pattern)


def _matches(text: Any, pattern: Any) -> bool:
    if not isinstance(text, str) or not isinstance(pattern, str):
        raise _soft("no such overload for matches()")
    try:
        rx = _re2_cached(pattern)
    except Exception as e:  # re2.error
        raise _soft(f"match error: {_re2_msg(e)}") from None
    try:
        return rx.search(text) is not None
    except ValueError as e:  # surrogates cannot be encoded for RE2
        raise _soft(f"return error for overflow: {e}") from None


# ---------------------------------------------------------------------------------------------
# Cost


_FUNCTION_COST: dict[str, int] = {
    "jewel": 10,
    "jewel_set": 10,
    "glob": 5,
    "basename": 1,
    "is_ip": 2,
    "is_loopback": 2,
    "is_link_local": 2,
    "is_private": 3,
    "is_metadata": 3,
    "allows_path": 10,
    "allows_write": 10,
    "allows_host": 5,
    "allows_endpoint": 5,
    "allows_program": 3,
    "allows_flow": 5,
    "size": 1,
    "int": 2,
    "double": 2,
    "string": 2,
    "has": 1,
    "startsWith": 2,
    "endsWith": 2,
    "contains": 3,
    "matches": 50,
}


def estimate_cost(tree: lark.Tree, env: CelEnv) -> int:
    """Worst-case static cost, Kubernetes style, in *steps*.

    A step is one constant-time operation of a lowered closure (a literal, a field read, a
    comparison, a boolean operator), about 30-60 ns here. Function calls cost what
    `_FUNCTION_COST` says (glob-set matchers 5-10 steps, `matches` 50: RE2 scans the string).
    `&&`/`||` count both sides, `?:` its dearer branch. A comprehension costs its range plus
    `size(range) * (body + 1)`; every list fact and dyn collection is assumed to hold at most
    `MAX_LIST_SIZE` (256) elements, list literals hold what they show. `==` on lists and `in`
    over a list cost the list's size. Compare with `COST_LIMIT`.
    """
    n = _convert(tree)
    _Checker(env).check(n, {})
    return _cost(n)[0]


def _cost(n: _Node) -> tuple[int, int]:
    """(cost, size) where size bounds the length of a list/map value."""
    k = n.kind
    if k in ("lit", "ident"):
        return 1, MAX_LIST_SIZE
    kids = [_cost(c) for c in n.kids]
    total = sum(c for c, _ in kids)
    if k == "list":
        return total + 1, len(n.kids)
    if k == "map":
        return total + 1, len(n.kids)
    if k == "cond":
        return kids[0][0] + max(kids[1][0], kids[2][0]) + 1, max(kids[1][1], kids[2][1])
    if k == "macro":
        rc, rs = kids[0]
        return rc + rs * (kids[1][0] + 1) + 1, rs
    if k == "bin":
        op = n.a
        if op == "in" and (_is_list(n.kids[1].t) or n.kids[1].t == "dyn"):
            return total + kids[1][1], 0
        if op in ("==", "!=") and (_is_list(n.kids[0].t) or _is_map(n.kids[0].t)):
            return total + min(kids[0][1], kids[1][1]) + 1, 0
        if op == "+" and _is_list(n.t):
            return total + 1, kids[0][1] + kids[1][1]
        return total + 1, MAX_LIST_SIZE
    if k in ("call", "method"):
        return total + _FUNCTION_COST.get(n.a, 5), MAX_LIST_SIZE
    if k == "has":
        return total + 1, 0
    return total + 1, kids[0][1] if kids else MAX_LIST_SIZE


# ---------------------------------------------------------------------------------------------
# check


def check(tree: lark.Tree, env: CelEnv) -> str:
    """Static type check against `schema`; returns the CEL type name of the expression.

    Raises `CelError` at the offending node for unknown names, fields and functions, wrong
    arity, type errors and the forms this module rejects (see the module docstring).
    """
    n = _convert(tree)
    return _tname(_Checker(env).check(n, {}))


# ---------------------------------------------------------------------------------------------
# Runtime helpers: celpy's operator semantics on plain values, for dyn operands.


class _PStr(str):
    """A string built by `+`, indexing or iteration. celpy leaves those as plain `str`, which
    lacks the `.contains` method, so `("a" + "b").contains("a")` is an error there too."""

    __slots__ = ()


_B, _I, _D, _S, _N, _L, _M, _X = range(8)
_KINDS: dict[type, int] = {
    bool: _B,
    int: _I,
    float: _D,
    str: _S,
    _PStr: _S,
    type(None): _N,
    list: _L,
    tuple: _L,
    dict: _M,
}


def _kind(v: Any) -> int:
    k = _KINDS.get(v.__class__)
    if k is not None:
        return k
    if isinstance(v, bool):
        return _B
    if isinstance(v, int):
        return _I
    if isinstance(v, float):
        return _D
    if isinstance(v, str):
        return _S
    if isinstance(v, (list, tuple)):
        return _L
    if isinstance(v, Mapping):
        return _M
    return _X


_ERRV = object()  # an element comparison that failed (celpy keeps the TypeError as a value)


def _eq_py(a: Any, b: Any) -> bool:
    """celpy's `a == b` (Python dispatch over celtypes); TypeError where celpy has no overload."""
    ka, kb = _kind(a), _kind(b)
    if ka == kb:
        if ka == _L:
            return len(a) == len(b) and _seq_and(zip(a, b, strict=True), _eq_py)
        if ka == _M:
            if a.keys() != b.keys():
                return False
            return _seq_and(((a[k], b[k]) for k in a), _eq_py)
        if ka == _N:
            return True
        if ka == _X:
            raise TypeError("no such overload")
        return a == b
    if ka == _B:
        if kb == _I:
            return a == b
        if kb == _S or kb == _N:
            return False
    elif ka == _S:
        if kb == _B or kb == _N:
            return False
    elif ka == _N:
        if kb == _B or kb == _S or kb == _L or kb == _M:
            return False
    elif (ka == _L or ka == _M) and kb == _N:
        return False
    raise TypeError("no such overload")


def _seq_reduce(
    pairs: Iterable[tuple[Any, Any]], cmp: Callable[[Any, Any], bool], unit: bool
) -> bool:
    """celpy's list/map `==` (unit True: `reduce(logical_and, ...)`) and `!=` (unit False:
    `reduce(logical_or, ...)`), where failed comparisons are values, not exceptions."""
    absorb = not unit
    acc: Any = unit
    for x, y in pairs:
        try:
            r: Any = cmp(x, y)
        except TypeError:
            r = _ERRV
        if acc is unit:
            acc = r
        elif r is absorb:
            return absorb
        elif r is _ERRV:
            raise TypeError("no such overload")
        if acc is absorb:
            return absorb
    if acc is _ERRV:
        raise TypeError("no such overload")
    return unit


def _seq_and(pairs: Iterable[tuple[Any, Any]], cmp: Callable[[Any, Any], bool]) -> bool:
    return _seq_reduce(pairs, cmp, True)


def _seq_or(pairs: Iterable[tuple[Any, Any]], cmp: Callable[[Any, Any], bool]) -> bool:
    return _seq_reduce(pairs, cmp, False)


def _ne_py(a: Any, b: Any) -> bool:
    """celpy's `a != b`; note `[1] != null` is an error while `[1] == null` is false."""
    ka, kb = _kind(a), _kind(b)
    if ka == kb:
        if ka == _L:
            if len(a) != len(b):
                return True
            return _seq_or(zip(a, b, strict=True), _ne_py)
        if ka == _M:
            if len(a) == 1 and len(b) == 1 and a.keys() == b.keys():
                k = next(iter(a))
                return _ne_py(a[k], b[k])
            if a.keys() != b.keys():
                return True
            return _seq_or(((a[k], b[k]) for k in a), _ne_py)
        if ka == _N:
            return False
        if ka == _X:
            raise TypeError("no such overload")
        return a != b
    if ka == _B:
        if kb == _I:
            return a != b
        if kb == _S or kb == _N:
            return True
    elif ka == _S or ka == _N:
        if kb == _B or kb == _N or kb == _S:
            return True
    raise TypeError("no such overload")


_ORDER_OK = frozenset(
    {(_I, _I), (_D, _D), (_S, _S), (_B, _B), (_B, _I), (_B, _D), (_D, _I), (_D, _B)}
)


def _ordered(a: Any, b: Any) -> None:
    if (_kind(a), _kind(b)) not in _ORDER_OK:
        raise _soft("no such overload for ordering")


def _dyn_eq(a: Any, b: Any) -> bool:
    try:
        return _eq_py(a, b)
    except TypeError:
        raise _soft("found no matching overload for '=='") from None


def _dyn_ne(a: Any, b: Any) -> bool:
    try:
        return _ne_py(a, b)
    except TypeError:
        raise _soft("found no matching overload for '!='") from None


def _dyn_lt(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return a < b


def _dyn_le(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return a <= b


def _dyn_gt(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return a > b


def _dyn_ge(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return a >= b


def _dyn_in(item: Any, container: Any) -> bool:
    """celpy's `in`: compares `element == item` over list elements, map keys or (for a dyn
    string) characters; a failed comparison is an error only when nothing matched."""
    kc = _kind(container)
    if kc != _L and kc != _M and kc != _S:
        raise _soft("found no matching overload for 'in'")
    failed = False
    for c in container:
        try:
            if _eq_py(c, item):
                return True
        except TypeError:
            failed = True
    if failed:
        raise _soft("no such overload for 'in'")
    return False


def _dyn_size(v: Any) -> int:
    k = _kind(v)
    if k == _N:
        return 0  # celpy: size(null) == 0
    if k == _S or k == _L or k == _M:
        return len(v)
    raise _soft("no such overload for size()")


def _dyn_index(c: Any, i: Any) -> Any:
    kc, ki = _kind(c), _kind(i)
    try:
        if kc == _L and (ki == _I or ki == _B):
            return c[i]  # negative indexes count from the end, as in celpy
        if kc == _M and (ki == _S or ki == _I or ki == _B):
            return c[i]
        if kc == _S and (ki == _I or ki == _B):
            return _PStr(c[i])
    except IndexError:
        raise _soft("invalid_argument: index out of range") from None
    except KeyError:
        raise _soft(f"no such key: {i!r}") from None
    raise _soft("found no matching overload for _[_]")


def _dyn_select(v: Any, name: str) -> Any:
    if _kind(v) == _M:
        try:
            return v[name]
        except KeyError:
            raise _soft(f"no such member in mapping: {name!r}") from None
    raise _soft(f"value does not support field selection .{name}")


def _dyn_not(v: Any) -> bool:
    if v is True:
        return False
    if v is False:
        return True
    raise _soft("found no matching overload for '!'")


def _iter_dyn(v: Any) -> Iterable[Any]:
    k = _kind(v)
    if k == _L or k == _M:
        return v
    if k == _S:
        return [_PStr(c) for c in v]
    raise _FatalTypeError(f"{type(v).__name__} is not iterable")


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _i64(r: int) -> int:
    if _I64_MIN <= r <= _I64_MAX:
        return r
    raise _soft("return error for overflow")


def _add_i(a: int, b: int) -> int:
    return _i64(a + b)


def _sub_i(a: int, b: int) -> int:
    return _i64(a - b)


def _mul_i(a: int, b: int) -> int:
    return _i64(a * b)


def _div_i(a: int, b: int) -> int:
    if b == 0:
        raise _soft("modulus or divide by zero")
    sign = (-1 if a < 0 else 1) * (-1 if b < 0 else 1)
    return _i64(sign * (abs(a) // abs(b)))


def _mod_i(a: int, b: int) -> int:
    if b == 0:
        raise _soft("modulus or divide by zero")
    return _i64((-1 if a < 0 else 1) * (abs(a) % abs(b)))


def _neg_i(a: int) -> int:
    return _i64(-a)


def _add_s(a: str, b: str) -> str:
    return _PStr(a + b)


def _add_l(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    return [*a, *b]


def _to_int(v: Any) -> int:
    """celpy's IntType(v) on a plain value."""
    k = _kind(v)
    try:
        if k == _N:
            return 0
        if k == _I:
            return v
        if k == _B:
            return int(v)
        if k == _D:
            try:
                return _i64(math.trunc(v))
            except OverflowError as e:  # celpy lets this escape uncaught
                raise _FatalError(f"OverflowError: {e}") from None
        if k == _S:
            if v[:2] in ("0x", "0X"):
                return _i64(int(v[2:], 16))
            if v[:3] in ("-0x", "-0X"):
                return _i64(-int(v[3:], 16))
            return _i64(int(v))
        raise TypeError(f"int() of {type(v).__name__}")
    except (ValueError, TypeError) as e:
        raise _soft(f"int(): {e}") from None


def _to_double(v: Any) -> float:
    """celpy's DoubleType(v) on a plain value."""
    if v is None:
        return 0.0
    k = _kind(v)
    if k == _L or k == _M or k == _X:
        raise _soft("no such overload for double()")
    try:
        return float(v)
    except (ValueError, TypeError) as e:
        raise _soft(f"double(): {e}") from None


def _to_string(v: Any) -> str:
    """celpy's StringType(v) for a string, int or double (the only accepted sources)."""
    return str(v)


def _dyn_range(fn: Callable[..., Any]) -> Callable[..., Any]:
    def f(ctx: Any, loc: Any = None) -> Any:
        return _iter_dyn(fn(ctx, loc))

    return f


def _witness(ctx: Any, var: str, chain: str | None, e: Any) -> None:
    if ctx is None:
        return
    w = getattr(ctx, "witness", None)
    if w is not None:
        w[var] = e
        if chain:
            w[chain] = e


# ---------------------------------------------------------------------------------------------
# Lowering


@dataclass(frozen=True, slots=True)
class Lowered:
    """A lowered expression. `fn(ctx)` evaluates it; when `const`, it folded to `value`."""

    fn: Callable[..., Any]
    const: bool = False
    value: Any = None
    type: str = "dyn"


Fn = Callable[..., Any]


@dataclass(slots=True)
class _Lo:
    fn: Fn  # fn(ctx, loc=None)
    const: bool = False
    value: Any = None
    err: CelEvalError | None = None  # folded to this error
    raises: int = 0  # bitmask of error kinds fn may raise
    ctxfree: bool = True  # reads no ctx
    free: frozenset[int] = frozenset()  # comprehension variables (depths) it reads
    local: int = -1  # fn is loc[local]
    ufn: Fn | None = None  # fn(ctx, loc) == ufn(loc[uvar]) for a node of one variable
    uvar: int = -1
    chain: str | None = None  # "call.paths" for a plain member chain
    attrpath: str | None = None  # dotted attribute path from ctx, for record reads
    getter: Callable[[Any], Any] | None = None  # fn(ctx, loc) == getter(ctx), cannot fail
    impl: Callable[[Any], Any] | None = None  # ufn is a checked call of impl (for fusion)
    result: str = ""  # declared result type of impl
    t: _T = None


def _const(v: Any, t: _T = None) -> _Lo:
    def f(ctx: Any, loc: Any = None) -> Any:
        return v

    return _Lo(f, const=True, value=v, t=t)


def _const_err(e: CelEvalError, t: _T = None) -> _Lo:
    cls, msg = e.__class__, str(e)

    def f(ctx: Any, loc: Any = None) -> Any:
        raise cls(msg)

    return _Lo(f, err=e, raises=_CLASS_BITS.get(cls, _SOFT), t=t)


def _only_soft(e: BaseException) -> bool:
    return e.__class__ is CelEvalError


def _gather(parts: Sequence[_Lo]) -> Callable[[Any, Any], list[Any]]:
    """Evaluate operands left to right like celpy's `visit_children`: all of them run (so a
    later raised error wins), then the first error *value* is raised."""
    fns = tuple(p.fn for p in parts)
    later_hard = [any(q.raises & _NONSOFT for q in parts[i + 1 :]) for i in range(len(parts))]

    if not any(later_hard):

        def g(ctx: Any, loc: Any) -> list[Any]:
            return [f(ctx, loc) for f in fns]

        return g

    def g2(ctx: Any, loc: Any) -> list[Any]:
        vals: list[Any] = []
        first: CelEvalError | None = None
        for f in fns:
            try:
                vals.append(f(ctx, loc))
            except CelEvalError as e:
                if not _only_soft(e):
                    raise
                if first is None:
                    first = e
                vals.append(None)
        if first is not None:
            raise first
        return vals

    return g2


def _bin(lf: Fn, rf: Fn, r_hard: bool, op: Callable[[Any, Any], Any]) -> Fn:
    if not r_hard:

        def f(ctx: Any, loc: Any = None) -> Any:
            return op(lf(ctx, loc), rf(ctx, loc))

        return f

    def f2(ctx: Any, loc: Any = None) -> Any:
        try:
            a = lf(ctx, loc)
        except CelEvalError as e:
            if not _only_soft(e):
                raise
            try:
                rf(ctx, loc)
            except CelEvalError as e2:
                if not _only_soft(e2):
                    raise
            raise
        return op(a, rf(ctx, loc))

    return f2


def _bin_const(a: _Lo, k: Any, op: Callable[[Any, Any], Any]) -> Fn:
    lf, g = a.fn, a.getter
    if g is not None:
        if op is operator.eq:

            def geq(ctx: Any, loc: Any = None) -> Any:
                return g(ctx) == k

            return geq
        if op is operator.ne:

            def gne(ctx: Any, loc: Any = None) -> Any:
                return g(ctx) != k

            return gne

        def gop(ctx: Any, loc: Any = None) -> Any:
            return op(g(ctx), k)

        return gop
    if op is operator.eq:

        def feq(ctx: Any, loc: Any = None) -> Any:
            return lf(ctx, loc) == k

        return feq
    if op is operator.ne:

        def fne(ctx: Any, loc: Any = None) -> Any:
            return lf(ctx, loc) != k

        return fne

    def f(ctx: Any, loc: Any = None) -> Any:
        return op(lf(ctx, loc), k)

    return f


def _compose_const(a: _Lo, k: Any, op: Callable[[Any, Any], Any]) -> Fn:
    """Unary form of `op(a, k)` for a node `a` of one comprehension variable."""
    au = a.ufn
    assert au is not None
    if a.impl is not None and a.result == "string" and op in (operator.eq, operator.ne):
        return _fused_string_cmp(a.impl, _result_check("", "string"), k, op is operator.eq)
    if a.local >= 0:
        if op is operator.eq:
            return lambda e: e == k
        return lambda e: op(e, k)
    if op is operator.eq:
        return lambda e: au(e) == k
    if op is operator.ne:
        return lambda e: au(e) != k
    return lambda e: op(au(e), k)


def _fused_string_cmp(
    impl: Callable[[Any], Any], checked: Callable[[Any], Any], k: Any, eq: bool
) -> Fn:
    """`impl(e) == k` in one frame: the body of `exists(p, jewel(p) == "crown")`."""
    if eq:

        def ueq(e: Any) -> Any:
            try:
                r = impl(e)
            except Exception as ex:
                raise _soft(f"call failed: {ex}") from ex
            if r.__class__ is str:
                return r == k
            return checked(r) == k

        return ueq

    def une(e: Any) -> Any:
        try:
            r = impl(e)
        except Exception as ex:
            raise _soft(f"call failed: {ex}") from ex
        if r.__class__ is str:
            return r != k
        return checked(r) != k

    return une


def _fused_not(impl: Callable[[Any], Any], checked: Callable[[Any], Any]) -> Fn:
    """`!impl(e)` in one frame: the body of `exists(p, !archetype.allows_path(p))`."""

    def unot(e: Any) -> Any:
        try:
            r = impl(e)
        except Exception as ex:
            raise _soft(f"call failed: {ex}") from ex
        if r is True:
            return False
        if r is False:
            return True
        return not checked(r)

    return unot


def _and_values(x: Any, y: Any) -> Any:
    """celpy's logical_and where error values are non-bool operands."""
    xb = x is True or x is False
    yb = y is True or y is False
    if xb and yb:
        return x and y
    if not xb and not yb:
        raise _soft("found no matching overload for '&&'")
    if yb:
        if y:
            if isinstance(x, CelEvalError):
                raise CelEvalError(str(x))
            return x
        return False
    if x:
        if isinstance(y, CelEvalError):
            raise CelEvalError(str(y))
        return y
    return False


def _or_values(x: Any, y: Any) -> Any:
    """celpy's logical_or where error values are non-bool operands."""
    xb = x is True or x is False
    yb = y is True or y is False
    if xb and yb:
        return x or y
    if not xb and not yb:
        raise _soft("found no matching overload for '||'")
    if yb:
        if y:
            return True
        if isinstance(x, CelEvalError):
            raise CelEvalError(str(x))
        return x
    if x:
        return True
    if isinstance(y, CelEvalError):
        raise CelEvalError(str(y))
    return y


def _bool_logic(af: Fn, bf: Fn, is_and: bool) -> Fn:
    """`a && b` / `a || b` for two bool-typed operands that may fail with an error value:
    the decisive value wins over an error on either side, otherwise the error stands."""
    if is_and:

        def fand(ctx: Any, loc: Any = None) -> Any:
            try:
                x = af(ctx, loc)
            except CelEvalError as e:
                if e.__class__ is not CelEvalError:
                    raise
                x = e
            if x is False:
                return False
            y = bf(ctx, loc)  # x is True (y decides) or an error (unless y is false)
            if x is True or y is False:
                return y
            raise x

        return fand

    def for_(ctx: Any, loc: Any = None) -> Any:
        try:
            x = af(ctx, loc)
        except CelEvalError as e:
            if e.__class__ is not CelEvalError:
                raise
            x = e
        if x is True:
            return True
        y = bf(ctx, loc)
        if x is False or y is True:
            return y
        raise x

    return for_


def _bool_logic_unary(au: Fn, bu: Fn, is_and: bool) -> Fn:
    """`_bool_logic` for a comprehension body of one variable."""
    if is_and:

        def uand(e: Any) -> Any:
            try:
                x = au(e)
            except CelEvalError as ex:
                if ex.__class__ is not CelEvalError:
                    raise
                x = ex
            if x is False:
                return False
            y = bu(e)
            if x is True or y is False:
                return y
            raise x

        return uand

    def uor(e: Any) -> Any:
        try:
            x = au(e)
        except CelEvalError as ex:
            if ex.__class__ is not CelEvalError:
                raise
            x = ex
        if x is True:
            return True
        y = bu(e)
        if x is False or y is True:
            return y
        raise x

    return uor


def _catch_soft(fn: Fn) -> Fn:
    """Turn a soft error raised by fn into the returned error value."""

    def g(ctx: Any, loc: Any = None) -> Any:
        try:
            return fn(ctx, loc)
        except CelEvalError as e:
            if not _only_soft(e):
                raise
            return e

    return g


class _Lowerer:
    def __init__(self, env: CelEnv, constants: Mapping[str, Any]) -> None:
        self.env = env
        self.constants = constants

    # -- folding -------------------------------------------------------------------------------

    def fin(self, lo: _Lo, t: _T) -> _Lo:
        lo.t = t
        if lo.const or lo.err is not None or not lo.ctxfree or lo.free:
            return lo
        try:
            v = lo.fn(None, None)
        except CelEvalError as e:
            return _const_err(e, t)
        return _const(v, t)

    def lo(self, n: _Node) -> _Lo:
        return getattr(self, "l_" + n.kind)(n)

    # -- leaves -------------------------------------------------------------------------------

    def l_lit(self, n: _Node) -> _Lo:
        return _const(n.a, n.t)

    def l_ident(self, n: _Node) -> _Lo:
        if n.b is not None:
            d = n.b

            def f(ctx: Any, loc: Any = None) -> Any:
                return loc[d]

            return _Lo(f, local=d, free=frozenset({d}), ufn=_identity, uvar=d, t=n.t)
        name = n.a
        if name in self.constants:
            return _const(self.constants[name], n.t)
        g = operator.attrgetter(name)

        def r(ctx: Any, loc: Any = None) -> Any:
            return g(ctx)

        return _Lo(r, ctxfree=False, chain=name, attrpath=name, t=n.t)

    def l_select(self, n: _Node) -> _Lo:
        o = self.lo(n.kids[0])
        name = n.a
        ot = n.kids[0].t
        chain = f"{o.chain}.{name}" if o.chain else None
        if ot in _RECORDS:
            if o.const:
                try:
                    if isinstance(o.value, Mapping):
                        v = o.value[name]
                    else:
                        v = getattr(o.value, name)
                except (KeyError, AttributeError):
                    return _const_err(_soft(f"no such member {name!r}"), n.t)
                return _const(v, n.t)
            if o.attrpath is not None and ot != "Vars":
                path = f"{o.attrpath}.{name}"
                g = operator.attrgetter(path)

                def f(ctx: Any, loc: Any = None) -> Any:
                    try:
                        return g(ctx)
                    except AttributeError:
                        raise _soft(f"no such member {path!r}") from None

                # `call`, `agent` and `session` are always set where they are in scope (the
                # table builds them); `flow` may be missing, which is an error value.
                trusted = path.split(".", 1)[0] in ("call", "agent", "session")
                return _Lo(
                    f,
                    ctxfree=False,
                    chain=chain,
                    attrpath=path,
                    raises=0 if trusted else _SOFT,
                    getter=g if trusted else None,
                    t=n.t,
                )
            of = o.fn

            def fr(ctx: Any, loc: Any = None) -> Any:
                rec = of(ctx, loc)
                try:
                    return rec[name] if isinstance(rec, Mapping) else getattr(rec, name)
                except (KeyError, AttributeError):
                    raise _soft(f"no such member {name!r}") from None

            return self.fin(
                _Lo(fr, ctxfree=o.ctxfree, free=o.free, raises=o.raises | _SOFT, chain=chain), n.t
            )
        of = o.fn
        if _is_map(ot) and o.getter is not None:
            og = o.getter

            def fmg(ctx: Any, loc: Any = None) -> Any:
                try:
                    return og(ctx)[name]
                except KeyError:
                    raise _soft(f"no such member in mapping: {name!r}") from None

            return _Lo(fmg, ctxfree=False, raises=_SOFT, chain=chain, t=n.t)
        if _is_map(ot):

            def fm(ctx: Any, loc: Any = None) -> Any:
                m = of(ctx, loc)
                try:
                    return m[name]
                except KeyError:
                    raise _soft(f"no such member in mapping: {name!r}") from None

            return self.fin(
                _Lo(fm, ctxfree=o.ctxfree, free=o.free, raises=o.raises | _SOFT, chain=chain), n.t
            )

        def fd(ctx: Any, loc: Any = None) -> Any:
            return _dyn_select(of(ctx, loc), name)

        return self.fin(
            _Lo(fd, ctxfree=o.ctxfree, free=o.free, raises=o.raises | _SOFT, chain=chain), n.t
        )

    def l_index(self, n: _Node) -> _Lo:
        o, i = self.lo(n.kids[0]), self.lo(n.kids[1])
        ot, it = n.kids[0].t, n.kids[1].t
        if _is_list(ot) and it == "int":

            def op(c: Any, k: Any) -> Any:
                try:
                    return c[k]
                except IndexError:
                    raise _soft("invalid_argument: index out of range") from None
        elif _is_map(ot) and it == "string":

            def op(c: Any, k: Any) -> Any:
                try:
                    return c[k]
                except KeyError:
                    raise _soft(f"no such key: {k!r}") from None
        else:
            op = _dyn_index
        return self.fin(self._binop(o, i, op, _SOFT), n.t)

    def _binop(self, a: _Lo, b: _Lo, op: Callable[[Any, Any], Any], extra: int) -> _Lo:
        if b.const and b.err is None:
            fn = _bin_const(a, b.value, op)
        else:
            fn = _bin(a.fn, b.fn, bool(b.raises & _NONSOFT), op)
        lo = _Lo(
            fn,
            ctxfree=a.ctxfree and b.ctxfree,
            free=a.free | b.free,
            raises=a.raises | b.raises | extra,
        )
        if b.const and b.err is None and a.ufn is not None and a.free == {a.uvar}:
            lo.ufn, lo.uvar = _compose_const(a, b.value, op), a.uvar
        return lo

    # -- functions ----------------------------------------------------------------------------

    def _impl(self, n: _Node, name: str) -> Callable[..., Any]:
        impl = self.env.functions.get(name)
        if impl is None:
            raise CelError(f"no implementation is bound for {name}()", n.line, n.col)
        return impl

    def _call(
        self, n: _Node, name: str, impl: Callable[..., Any], result: str, args: Sequence[_Lo]
    ) -> _Lo:
        """Call a schema function: arguments first (their errors win), then the implementation,
        whose exceptions are error values and whose result must have the declared type."""
        checked = _result_check(name, result)
        raises = _SOFT
        for a in args:
            raises |= a.raises
        free = frozenset().union(*(a.free for a in args))
        ctxfree = all(a.ctxfree for a in args)
        # One comprehension variable (plus constants): a unary closure, no argument list.
        u: Fn | None = None
        uimpl: Callable[[Any], Any] | None = None
        if len(args) == 1 and args[0].local >= 0:
            uimpl = impl
        elif len(args) == 2 and args[0].local >= 0 and args[1].const and args[1].err is None:
            uimpl = partial(_swap2, impl, args[1].value)
        if uimpl is not None:
            u = _unary_call(name, uimpl, checked, result)
            d = args[0].local
            u1 = u

            def f1(ctx: Any, loc: Any = None) -> Any:
                return u1(loc[d])

            return _Lo(
                f1,
                raises=raises,
                free=free,
                ctxfree=ctxfree,
                ufn=u,
                uvar=d,
                impl=uimpl,
                result=result,
            )
        if len(args) == 1:
            af = args[0].fn

            def g1(ctx: Any, loc: Any = None) -> Any:
                x = af(ctx, loc)
                try:
                    r = impl(x)
                except Exception as ex:
                    raise _soft(f"{name}(): {ex}") from ex
                if r is True or r is False:
                    return r
                return checked(r)

            return _Lo(g1, raises=raises, free=free, ctxfree=ctxfree)
        gather = _gather(args)

        def gn(ctx: Any, loc: Any = None) -> Any:
            xs = gather(ctx, loc)
            try:
                r = impl(*xs)
            except Exception as ex:
                raise _soft(f"{name}(): {ex}") from ex
            return checked(r)

        return _Lo(gn, raises=raises, free=free, ctxfree=ctxfree)

    def l_call(self, n: _Node) -> _Lo:
        name = n.a
        args = [self.lo(k) for k in n.kids]
        if name == "size":
            return self.fin(self._size(args[0], n.kids[0].t), n.t)
        if name in _CONVERSIONS:
            return self.fin(self._conversion(name, args[0], n.kids[0].t), n.t)
        if name == "matches":
            return self.fin(
                self._string_method("matches", args[0], args[1], n.kids[0].t, n.kids[1]), n.t
            )
        f = _FUNCTIONS[name]
        return self.fin(self._call(n, name, self._impl(n, name), f.result, args), n.t)

    def _unary(self, a: _Lo, op: Callable[[Any], Any], extra: int) -> _Lo:
        af, g = a.fn, a.getter
        if op is operator.not_ and g is not None:

            def f(ctx: Any, loc: Any = None) -> Any:
                return not g(ctx)
        elif op is operator.not_:

            def f(ctx: Any, loc: Any = None) -> Any:
                return not af(ctx, loc)
        elif g is not None:

            def f(ctx: Any, loc: Any = None) -> Any:
                return op(g(ctx))
        else:

            def f(ctx: Any, loc: Any = None) -> Any:
                return op(af(ctx, loc))

        lo = _Lo(f, ctxfree=a.ctxfree, free=a.free, raises=a.raises | extra)
        if a.ufn is not None and a.free == {a.uvar}:
            au = a.ufn
            if op is operator.not_ and a.impl is not None and a.result == "bool":
                lo.ufn = _fused_not(a.impl, _result_check("", "bool"))
            elif op is operator.not_:
                lo.ufn = lambda e: not au(e)
            else:
                lo.ufn = lambda e: op(au(e))
            lo.uvar = a.uvar
        return lo

    def _size(self, a: _Lo, t: _T) -> _Lo:
        if t == "dyn":
            return self._unary(a, _dyn_size, _SOFT)
        return self._unary(a, len, 0)

    def _conversion(self, name: str, a: _Lo, t: _T) -> _Lo:
        if name == "int":
            if t == "int":
                return a
            return self._unary(a, _to_int, _SOFT | (_FATAL if t in ("double", "dyn") else 0))
        if name == "double":
            if t == "double":
                return a
            return self._unary(a, _to_double, _SOFT if t in ("string", "dyn") else 0)
        return self._unary(a, _to_string, 0)

    def _string_method(self, name: str, recv: _Lo, arg: _Lo, rt: _T, arg_node: _Node) -> _Lo:
        static = rt == "string" and arg_node.t == "string"
        if name == "matches":
            if arg.const and isinstance(arg.value, str) and arg.err is None:
                rx = _re2_compile(arg.value)

                def m1(s: Any, p: Any) -> bool:
                    if not isinstance(s, str):
                        raise _soft("no such overload for matches()")
                    try:
                        return rx.search(s) is not None
                    except ValueError as e:
                        raise _soft(f"return error for overflow: {e}") from None

                return self._binop(recv, arg, m1, _SOFT)
            return self._binop(recv, arg, _matches, _SOFT)
        if name == "contains":

            def op(s: Any, x: Any) -> bool:
                c = s.__class__
                if c is str:
                    if x.__class__ is str or isinstance(x, str):
                        return x in s
                    raise _soft("no such overload for contains()")
                return _dyn_contains(s, x)

            return self._binop(recv, arg, op, _SOFT)
        meth = str.startswith if name == "startsWith" else str.endswith
        if static:
            return self._binop(recv, arg, meth, 0)

        def opd(s: Any, x: Any) -> bool:
            if isinstance(s, str) and isinstance(x, str):
                return meth(s, x)
            raise _soft(f"no such overload for {name}()")

        return self._binop(recv, arg, opd, _SOFT)

    def l_method(self, n: _Node) -> _Lo:
        name = n.a
        recv = self.lo(n.kids[0])
        args = [self.lo(k) for k in n.kids[1:]]
        rt = n.kids[0].t
        f = _FUNCTIONS.get(name)
        if f is not None:
            impl = self._impl(n, name)
            if recv.const:
                if recv.err is not None:
                    return recv
                return self.fin(self._call(n, name, partial(impl, recv.value), f.result, args), n.t)
            return self.fin(self._call(n, name, impl, f.result, [recv, *args]), n.t)
        if name == "size":
            return self.fin(self._size(recv, rt), n.t)
        return self.fin(self._string_method(name, recv, args[0], rt, n.kids[1]), n.t)

    # -- macros -------------------------------------------------------------------------------

    def l_macro(self, n: _Node) -> _Lo:
        rng = self.lo(n.kids[0])
        body = self.lo(n.kids[1])
        d = n.depth
        rt = n.kids[0].t
        rf = rng.fn if rt != "dyn" else _dyn_range(rng.fn)
        free = rng.free | (body.free - {d})
        ctxfree = rng.ctxfree and body.ctxfree
        unary = body.ufn if body.ufn is not None and body.uvar == d and body.free == {d} else None
        bf = body.fn
        fatal = body.raises & (_FTYPE | _FATAL)
        raises = rng.raises | fatal | (_FTYPE if rt == "dyn" else 0)
        kind = n.a
        if kind in ("exists", "all"):
            clean = body.raises == 0 and n.kids[1].t == "bool"
            getter = rng.getter if rt != "dyn" else None
            fn = self._exists_all(
                kind == "exists", rf, getter, bf, unary, d, clean, bool(fatal), n.b, rng.chain
            )
            raises |= 0 if clean else _SOFT
        else:
            can_fail = bool(body.raises)
            fn = {"exists_one": self._exists_one, "map": self._map, "filter": self._filter}[kind](
                rf, bf, unary, d, can_fail, n.b, rng.chain
            )
            raises |= _HARD if body.raises & (_SOFT | _HARD) else 0
        return self.fin(_Lo(fn, ctxfree=ctxfree, free=free, raises=raises), n.t)

    @staticmethod
    def _exists_all(
        is_exists: bool,
        rf: Fn,
        getter: Callable[[Any], Any] | None,
        bf: Fn,
        unary: Fn | None,
        d: int,
        clean: bool,
        fatal_body: bool,
        var: str,
        chain: str | None,
    ) -> Fn:
        stop = is_exists  # the value that decides: True for exists, False for all
        other = not stop

        def settle(state: Any) -> Any:
            if state is other:
                return state
            if state is _ERRV or isinstance(state, CelEvalError):
                raise _soft("no such overload in " + ("exists()" if stop else "all()"))
            return state  # a non-bool body value, returned as celpy does

        if unary is not None and not fatal_body:
            # The common shapes, one frame per element: `items` is read with the attribute
            # getter when the range is a fact (`call.paths`).
            p = unary
            g = getter if getter is not None else (lambda ctx, _rf=rf: _rf(ctx, None))
            if clean:  # no error of any kind, always a bool
                if is_exists:

                    def f(ctx: Any, loc: Any = None) -> Any:
                        for e in g(ctx) if loc is None else rf(ctx, loc):
                            if p(e):
                                _witness(ctx, var, chain, e)
                                return True
                        return False

                    return f

                def fa(ctx: Any, loc: Any = None) -> Any:
                    for e in g(ctx) if loc is None else rf(ctx, loc):
                        if not p(e):
                            return False
                    return True

                return fa

            def fe(ctx: Any, loc: Any = None) -> Any:
                state: Any = other
                for e in g(ctx) if loc is None else rf(ctx, loc):
                    try:
                        r = p(e)
                    except CelEvalError as ex:
                        if ex.__class__ is _FatalError or ex.__class__ is _FatalTypeError:
                            raise
                        r = ex
                    if r is stop:
                        if stop:
                            _witness(ctx, var, chain, e)
                        return stop
                    if r is not other:
                        state = r if state is other else _ERRV
                return state if state is other else settle(state)

            return fe
        if clean:
            if is_exists:

                def fl(ctx: Any, loc: Any = None) -> Any:
                    l2 = [None] if loc is None else [*loc, None]
                    for e in rf(ctx, loc):
                        l2[d] = e
                        if bf(ctx, l2):
                            _witness(ctx, var, chain, e)
                            return True
                    return False

                return fl

            def fla(ctx: Any, loc: Any = None) -> Any:
                l2 = [None] if loc is None else [*loc, None]
                for e in rf(ctx, loc):
                    l2[d] = e
                    if not bf(ctx, l2):
                        return False
                return True

            return fla

        # celpy never stops early: a later element can still raise past the macro, so with
        # such a body the rest is evaluated after the answer is known.
        full = fatal_body

        def run_loop(ctx: Any, items: Iterable[Any], body: Callable[[Any], Any]) -> Any:
            state: Any = other
            found: Any = _ERRV
            for e in items:
                try:
                    r = body(e)
                except CelEvalError as ex:
                    if ex.__class__ is _FatalError or ex.__class__ is _FatalTypeError:
                        raise
                    r = ex
                if found is not _ERRV:
                    continue
                if r is stop:
                    if not full:
                        if stop:
                            _witness(ctx, var, chain, e)
                        return stop
                    found = e
                elif r is not other:
                    state = r if state is other else _ERRV
            if found is not _ERRV:
                if stop:
                    _witness(ctx, var, chain, found)
                return stop
            return settle(state)

        if unary is not None:
            p = unary

            def fu(ctx: Any, loc: Any = None) -> Any:
                return run_loop(ctx, rf(ctx, loc), p)

            return fu

        def fg(ctx: Any, loc: Any = None) -> Any:
            l2 = [None] if loc is None else [*loc, None]

            def body(e: Any) -> Any:
                l2[d] = e
                return bf(ctx, l2)

            return run_loop(ctx, rf(ctx, loc), body)

        return fg

    @staticmethod
    def _body_runner(bf: Fn, unary: Fn | None, d: int) -> Callable[[Any, Any, Any], Any]:
        def run(e: Any, ctx: Any, l2: Any) -> Any:
            try:
                if unary is not None:
                    return unary(e)
                l2[d] = e
                return bf(ctx, l2)
            except CelEvalError as ex:
                if _only_soft(ex):
                    raise _HardError(str(ex)) from ex
                raise

        return run

    def _exists_one(
        self, rf: Fn, bf: Fn, unary: Fn | None, d: int, can_fail: bool, var: str, chain: str | None
    ) -> Fn:
        run = self._body_runner(bf, unary, d)

        def f(ctx: Any, loc: Any = None) -> Any:
            l2 = None if unary is not None else ([None] if loc is None else [*loc, None])
            count = 0
            first = None
            for e in rf(ctx, loc):
                if run(e, ctx, l2):
                    count += 1
                    if count == 1:
                        first = e
                    elif not can_fail:
                        return False
            if count == 1:
                _witness(ctx, var, chain, first)
                return True
            return False

        return f

    def _map(
        self, rf: Fn, bf: Fn, unary: Fn | None, d: int, can_fail: bool, var: str, chain: str | None
    ) -> Fn:
        run = self._body_runner(bf, unary, d)

        def f(ctx: Any, loc: Any = None) -> Any:
            l2 = None if unary is not None else ([None] if loc is None else [*loc, None])
            return [run(e, ctx, l2) for e in rf(ctx, loc)]

        return f

    def _filter(
        self, rf: Fn, bf: Fn, unary: Fn | None, d: int, can_fail: bool, var: str, chain: str | None
    ) -> Fn:
        run = self._body_runner(bf, unary, d)

        def f(ctx: Any, loc: Any = None) -> Any:
            l2 = None if unary is not None else ([None] if loc is None else [*loc, None])
            return [e for e in rf(ctx, loc) if run(e, ctx, l2)]

        return f

    # -- literals -----------------------------------------------------------------------------

    def l_list(self, n: _Node) -> _Lo:
        items = [self.lo(k) for k in n.kids]
        if all(i.const for i in items):
            return _const(tuple(i.value for i in items), n.t)
        gather = _gather(items)

        def f(ctx: Any, loc: Any = None) -> Any:
            return gather(ctx, loc)

        raises = 0
        for i in items:
            raises |= i.raises
        return self.fin(
            _Lo(
                f,
                ctxfree=all(i.ctxfree for i in items),
                free=frozenset().union(*(i.free for i in items)),
                raises=raises,
            ),
            n.t,
        )

    def l_map(self, n: _Node) -> _Lo:
        out = {}
        for key, k in zip(n.a, n.kids, strict=True):
            v = self.lo(k)
            if v.err is not None:
                raise CelError(f"map value for {key!r} is always an error: {v.err}", k.line, k.col)
            if not v.const:
                raise CelError("map literal values must be compile-time constants", k.line, k.col)
            out[key] = v.value
        return _const(out, n.t)

    # -- operators ----------------------------------------------------------------------------

    def l_has(self, n: _Node) -> _Lo:
        sel = n.kids[0]
        o = self.lo(sel.kids[0])
        name = sel.a
        ot = sel.kids[0].t
        if ot in _RECORDS:
            if o.const:
                v = o.value
                return _const(name in v if isinstance(v, Mapping) else hasattr(v, name), "bool")
        of = o.fn
        is_map = _is_map(ot)
        if is_map and o.getter is not None:
            og = o.getter

            def fg(ctx: Any, loc: Any = None) -> Any:
                return name in og(ctx)

            return _Lo(fg, ctxfree=False, t="bool")

        def f(ctx: Any, loc: Any = None) -> Any:
            try:
                v = of(ctx, loc)
            except CelEvalError as e:
                if _only_soft(e):
                    return False
                raise
            if ot in _RECORDS:
                return name in v if isinstance(v, Mapping) else hasattr(v, name)
            if is_map or _kind(v) == _M:
                return name in v
            return False

        return self.fin(_Lo(f, ctxfree=o.ctxfree, free=o.free, raises=o.raises & _NONSOFT), "bool")

    def l_not(self, n: _Node) -> _Lo:
        a = self.lo(n.kids[0])
        if n.kids[0].t == "bool":
            lo = self._unary(a, operator.not_, 0)
        else:
            lo = self._unary(a, _dyn_not, _SOFT)
        return self.fin(lo, "bool")

    def l_neg(self, n: _Node) -> _Lo:
        a = self.lo(n.kids[0])
        if n.t == "int":
            return self.fin(self._unary(a, _neg_i, _SOFT), n.t)
        return self.fin(self._unary(a, operator.neg, 0), n.t)

    def l_bin(self, n: _Node) -> _Lo:
        op = n.a
        a, b = self.lo(n.kids[0]), self.lo(n.kids[1])
        lt, rt = n.kids[0].t, n.kids[1].t
        static = lt == rt and lt in _ORDERED
        if op in ("==", "!="):
            if static:
                return self.fin(
                    self._binop(a, b, operator.eq if op == "==" else operator.ne, 0), n.t
                )
            if lt == rt == "null_type":
                return self.fin(self._binop(a, b, (lambda x, y: op == "=="), 0), n.t)
            return self.fin(self._binop(a, b, _dyn_eq if op == "==" else _dyn_ne, _SOFT), n.t)
        if op in ("<", "<=", ">", ">="):
            if static:
                pyop = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[
                    op
                ]
                return self.fin(self._binop(a, b, pyop, 0), n.t)
            dop = {"<": _dyn_lt, "<=": _dyn_le, ">": _dyn_gt, ">=": _dyn_ge}[op]
            return self.fin(self._binop(a, b, dop, _SOFT), n.t)
        if op == "in":
            return self.fin(self._in(a, b, lt, rt), n.t)
        if lt == "int":
            iop = {"+": _add_i, "-": _sub_i, "*": _mul_i, "/": _div_i, "%": _mod_i}[op]
            return self.fin(self._binop(a, b, iop, _SOFT), n.t)
        if lt == "string":
            return self.fin(self._binop(a, b, _add_s, 0), n.t)
        return self.fin(self._binop(a, b, _add_l, 0), n.t)

    def _in(self, a: _Lo, b: _Lo, lt: _T, rt: _T) -> _Lo:
        et = rt[1] if _is_list(rt) else None
        simple = lt in ("string", "int", "bool")
        if _is_list(rt) and simple and et == lt:
            if b.const and b.err is None:
                fs = frozenset(b.value)
                return self._binop(a, b, lambda x, c: x in fs, 0)
            return self._binop(a, b, lambda x, c: x in c, 0)
        if _is_map(rt) and lt == "string":
            return self._binop(a, b, lambda x, c: x in c, 0)
        return self._binop(a, b, _dyn_in, _SOFT)

    def l_and(self, n: _Node) -> _Lo:
        return self._logic(n, True)

    def l_or(self, n: _Node) -> _Lo:
        return self._logic(n, False)

    def _logic(self, n: _Node, is_and: bool) -> _Lo:
        a, b = self.lo(n.kids[0]), self.lo(n.kids[1])
        decisive = not is_and  # false for &&, true for ||
        a_hard = bool(a.raises & _NONSOFT)
        b_hard = bool(b.raises & _NONSOFT)
        # Folding: `true && x` is x, `false && x` is false unless x raises past it, ...
        if a.const and a.err is None:
            if a.value is (not decisive):
                return b
            if a.value is decisive and not b_hard:
                return _const(decisive, "bool")
        if b.const and b.err is None:
            if b.value is (not decisive):
                return a
            if b.value is decisive and not a_hard:
                return _const(decisive, "bool")
        af, bf = a.fn, b.fn
        clean = a.raises == 0 and b.raises == 0 and n.kids[0].t == "bool" and n.kids[1].t == "bool"
        raises = (a.raises | b.raises) & _NONSOFT
        if clean:
            if is_and and a.getter is not None and b.getter is not None:
                ga, gb = a.getter, b.getter

                def f(ctx: Any, loc: Any = None) -> Any:
                    return ga(ctx) and gb(ctx)
            elif is_and:

                def f(ctx: Any, loc: Any = None) -> Any:
                    return af(ctx, loc) and bf(ctx, loc)
            elif a.getter is not None and b.getter is not None:
                ga, gb = a.getter, b.getter

                def f(ctx: Any, loc: Any = None) -> Any:
                    return ga(ctx) or gb(ctx)
            else:

                def f(ctx: Any, loc: Any = None) -> Any:
                    return af(ctx, loc) or bf(ctx, loc)

            lo = _Lo(f, ctxfree=a.ctxfree and b.ctxfree, free=a.free | b.free, raises=raises)
            if (
                a.ufn is not None
                and b.ufn is not None
                and a.uvar == b.uvar
                and a.free == {a.uvar}
                and b.free == {b.uvar}
            ):
                au, bu = a.ufn, b.ufn
                lo.ufn = (lambda e: au(e) and bu(e)) if is_and else (lambda e: au(e) or bu(e))
                lo.uvar = a.uvar
            return self.fin(lo, n.t)
        if a.raises == 0 and n.kids[0].t == "bool" and not b_hard:
            # A plain bool on the left decides alone or hands over: `true && y` is exactly y.
            ga = a.getter if a.getter is not None else (lambda ctx, _af=af: _af(ctx, None))
            if is_and:

                def fl(ctx: Any, loc: Any = None) -> Any:
                    if ga(ctx) if loc is None else af(ctx, loc):
                        return bf(ctx, loc)
                    return False
            else:

                def fl(ctx: Any, loc: Any = None) -> Any:
                    if ga(ctx) if loc is None else af(ctx, loc):
                        return True
                    return bf(ctx, loc)

            return self.fin(
                _Lo(
                    fl,
                    ctxfree=a.ctxfree and b.ctxfree,
                    free=a.free | b.free,
                    raises=b.raises | (0 if n.kids[1].t == "bool" else _SOFT),
                ),
                n.t,
            )
        if n.kids[0].t == "bool" and n.kids[1].t == "bool" and not b_hard:
            # Both sides are bools or error values: celpy's commutative rules in one frame.
            lo = _Lo(
                _bool_logic(af, bf, is_and),
                ctxfree=a.ctxfree and b.ctxfree,
                free=a.free | b.free,
                raises=raises | _SOFT,
            )
            if (
                a.ufn is not None
                and b.ufn is not None
                and a.uvar == b.uvar
                and a.free == {a.uvar}
                and b.free == {b.uvar}
            ):
                lo.ufn, lo.uvar = _bool_logic_unary(a.ufn, b.ufn, is_and), a.uvar
            return self.fin(lo, n.t)
        combine = _and_values if is_and else _or_values
        ag, bg = _catch_soft(af), _catch_soft(bf)

        def g(ctx: Any, loc: Any = None) -> Any:
            x = ag(ctx, loc)
            if x is decisive and not b_hard:
                return decisive
            return combine(x, bg(ctx, loc))

        return self.fin(
            _Lo(g, ctxfree=a.ctxfree and b.ctxfree, free=a.free | b.free, raises=raises | _SOFT),
            n.t,
        )

    def l_cond(self, n: _Node) -> _Lo:
        c, t, e = (self.lo(k) for k in n.kids)
        t, e = self._branch(t), self._branch(e)
        if c.const and c.err is None:
            if c.value is True:
                return t
            if c.value is False:
                return e
        cf, tf, ef = c.fn, t.fn, e.fn
        cg = _catch_soft(cf)
        t_hard, e_hard = bool(t.raises & _NONSOFT), bool(e.raises & _NONSOFT)

        def f(ctx: Any, loc: Any = None) -> Any:
            v = cg(ctx, loc)
            if v is True:
                return tf(ctx, loc)
            if v is False:
                return ef(ctx, loc)
            # celpy evaluates the branch Python truthiness picks, then fails on the condition.
            if t_hard if v else e_hard:
                try:
                    (tf if v else ef)(ctx, loc)
                except CelEvalError as ex:
                    if not _only_soft(ex):
                        raise
            raise _soft("found no matching overload for _?_:_")

        raises = (c.raises & _NONSOFT) | _SOFT | t.raises | e.raises
        return self.fin(
            _Lo(
                f,
                ctxfree=c.ctxfree and t.ctxfree and e.ctxfree,
                free=c.free | t.free | e.free,
                raises=raises,
            ),
            n.t,
        )

    @staticmethod
    def _branch(lo: _Lo) -> _Lo:
        """celpy catches a raw TypeError from a ternary branch and returns an error value."""
        if not lo.raises & _FTYPE:
            return lo
        inner = lo.fn

        def f(ctx: Any, loc: Any = None) -> Any:
            try:
                return inner(ctx, loc)
            except _FatalTypeError as e:
                raise _soft(str(e)) from None

        return _Lo(
            f, ctxfree=lo.ctxfree, free=lo.free, raises=(lo.raises & ~_FTYPE) | _SOFT, t=lo.t
        )


def _identity(e: Any) -> Any:
    return e


def _swap2(impl: Callable[..., Any], k: Any, e: Any) -> Any:
    return impl(e, k)


def _result_check(name: str, result: str) -> Callable[[Any], Any]:
    """Implementations must return their declared type; anything else is an error value."""
    if result == "bool":

        def cb(r: Any) -> Any:
            if r is True or r is False:
                return r
            raise _soft(f"{name}() returned {type(r).__name__}, not bool")

        return cb
    if result == "string":

        def cs(r: Any) -> Any:
            if isinstance(r, str):
                return r
            raise _soft(f"{name}() returned {type(r).__name__}, not string")

        return cs
    return _identity


def _unary_call(
    name: str, impl: Callable[[Any], Any], checked: Callable[[Any], Any], result: str
) -> Fn:
    """`impl(e)` with its exceptions as error values and its result type checked, inlined for
    the common result types because this is the body of most comprehensions."""
    if result == "bool":

        def ub(e: Any) -> Any:
            try:
                r = impl(e)
            except Exception as ex:
                raise _soft(f"{name}(): {ex}") from ex
            if r is True or r is False:
                return r
            return checked(r)

        return ub
    if result == "string":

        def us(e: Any) -> Any:
            try:
                r = impl(e)
            except Exception as ex:
                raise _soft(f"{name}(): {ex}") from ex
            if r.__class__ is str:
                return r
            return checked(r)

        return us

    def ua(e: Any) -> Any:
        try:
            r = impl(e)
        except Exception as ex:
            raise _soft(f"{name}(): {ex}") from ex
        return checked(r)

    return ua


def _dyn_contains(s: Any, x: Any) -> bool:
    """celpy's `.contains()` on a dyn receiver: `item in self` per celtype, error otherwise."""
    k = _kind(s)
    if k == _S:
        if s.__class__ is _PStr:
            raise _soft("no such overload: a computed string has no contains()")
        if isinstance(x, str):
            return x in s
        raise _soft("no such overload for contains()")
    if k == _L:
        try:
            for el in s:
                if el is x or _eq_py(el, x):
                    return True
        except TypeError:
            raise _soft("no such overload for contains()") from None
        return False
    if k == _M:
        try:
            return x in s
        except TypeError:
            raise _soft("no such overload for contains()") from None
    raise _soft("no such overload for contains()")


def lower(tree: lark.Tree, env: CelEnv, constants: Mapping[str, Any]) -> Lowered:
    """Check `tree` and lower it to `fn(ctx)`, folding everything `constants` decides.

    `constants` maps top-level variables known at compile time (`archetype`, `vars`) to their
    values. Raises `CelError` for static problems and `CelEvalError` when the whole expression
    folds to an error (it would fail on every call).
    """
    n = _convert(tree)
    t = _Checker(env).check(n, {})
    lo = _Lowerer(env, constants).lo(n)
    if lo.err is not None:
        raise lo.err.__class__(str(lo.err))
    if lo.const:
        return Lowered(lo.fn, True, lo.value, _tname(t))
    # A bare fact (`call.writes`) is just its attribute getter.
    return Lowered(lo.getter or lo.fn, False, None, _tname(t))


# ---------------------------------------------------------------------------------------------
# Reference evaluation with cel-python


class _Record(celtypes.MapType):
    """A record variable (call, flow, archetype, ...) as celpy sees it: a map of its fields
    that still knows its Python object, so functions receive the object itself."""

    def __init__(self, obj: Any, fields: Mapping[str, Any]) -> None:
        super().__init__(fields)
        self.obj = obj


def _to_cel(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        return celtypes.BoolType(v)
    if isinstance(v, int):
        return celtypes.IntType(v)
    if isinstance(v, float):
        return celtypes.DoubleType(v)
    if isinstance(v, str):
        return celtypes.StringType(v)
    if isinstance(v, (list, tuple)):
        return celtypes.ListType([_to_cel(x) for x in v])
    if isinstance(v, Mapping):
        return celtypes.MapType({_to_cel(k): _to_cel(x) for k, x in v.items()})
    raise TypeError(f"cannot give a {type(v).__name__} to CEL")


def _record(obj: Any, record: str, env: CelEnv) -> _Record:
    fields: dict[Any, Any] = {}
    if isinstance(obj, Mapping):
        for k, x in obj.items():
            fields[celtypes.StringType(k)] = _to_cel(x)
    else:
        for name in env.fields(record):
            if hasattr(obj, name):
                fields[celtypes.StringType(name)] = _to_cel(getattr(obj, name))
    return _Record(obj, fields)


def _from_cel(v: Any) -> Any:
    if isinstance(v, _Record):
        return v.obj
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, celtypes.BoolType):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, list):
        return [_from_cel(x) for x in v]
    if isinstance(v, Mapping):
        return {_from_cel(k): _from_cel(x) for k, x in v.items()}
    return v


def _ref_function(name: str, impl: Callable[..., Any], result: str) -> Callable[..., Any]:
    from celpy.evaluation import CELEvalError

    def w(*args: Any) -> Any:
        try:
            r = impl(*(_from_cel(a) for a in args))
        except Exception as e:
            return CELEvalError(f"{name}(): {e}")
        if result == "bool" and not (r is True or r is False):
            return CELEvalError(f"{name}() returned {type(r).__name__}, not bool")
        if result == "string" and not isinstance(r, str):
            return CELEvalError(f"{name}() returned {type(r).__name__}, not string")
        return _to_cel(r)

    return w


@lru_cache(maxsize=1)
def _ref_environment() -> Any:
    import celpy

    return celpy.Environment(runner_class=celpy.InterpretedRunner)


@lru_cache(maxsize=1024)
def _ref_ast(source: str) -> Any:
    return _ref_environment().compile(source)


def reference_evaluate(source: str, activation: Mapping[str, Any], env: CelEnv) -> Any:
    """Evaluate `source` with cel-python and return a plain Python value.

    `activation` maps top-level variables to plain values (`call` a CallFacts, `flow` a
    FlowFacts, `archetype`/`agent`/`session` objects, `vars` a dict); `env.functions` are
    registered with celpy, unwrapping arguments and wrapping results. Any failure, including a
    Python exception escaping celpy, is a `CelEvalError`. Slow (celpy interprets the tree):
    tests, `policy explain`, never the decision path.
    """
    return _ref_run(source, _ref_activation(activation, env), env)


def _ref_activation(activation: Mapping[str, Any], env: CelEnv) -> dict[str, Any]:
    """Plain values → celpy values (records become maps that remember their object)."""
    act: dict[str, Any] = {}
    try:
        for name, value in activation.items():
            rec = schema.VARIABLES.get(name)
            if rec is not None and value is not None:
                act[name] = _record(value, rec, env)
            else:
                act[name] = _to_cel(value)
    except (TypeError, ValueError) as e:
        raise CelEvalError(f"activation: {e}") from e
    return act


def _ref_run(source: str, act: Mapping[str, Any], env: CelEnv) -> Any:
    from celpy.evaluation import CELEvalError

    try:
        ast = _ref_ast(source)
    except CELParseError as e:
        raise CelError(
            f"syntax error: {str(e.args[0]).splitlines()[0] if e.args else e}",
            e.line or 1,
            e.column or 1,
        ) from None
    fns = {
        f.name: _ref_function(f.name, env.functions[f.name], f.result)
        for f in schema.FUNCTIONS
        if f.name in env.functions
    }
    program = _ref_environment().program(ast, functions=fns)
    try:
        result = program.evaluate(dict(act))
    except CELEvalError as e:
        raise CelEvalError(str(e.args[0]) if e.args else "evaluation error") from None
    except RecursionError:
        raise
    except Exception as e:
        raise CelEvalError(f"cel-python raised {type(e).__name__}: {e}") from None
    return _from_cel(result)


# ---------------------------------------------------------------------------------------------
# Clauses, for `policy explain`


_WRAPPERS = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
    }
)


def clauses(tree: lark.Tree) -> list[tuple[str, lark.Tree]]:
    """Top-level `&&` conjuncts (or, failing that, `||` disjuncts) with their source text.

    Outer parentheses are looked through; a single clause is the whole expression. The
    subtrees can be passed to `check`/`lower` like whole expressions.
    """
    src = getattr(tree, _SRC_ATTR, None)

    def text(t: lark.Tree) -> str:
        m = t.meta
        if src is not None and not getattr(m, "empty", True):
            return src[m.start_pos : m.end_pos]
        return tree_dump(t)

    def mark(t: lark.Tree) -> lark.Tree:
        if src is not None:
            setattr(t, _SRC_ATTR, src)
        return t

    t = tree
    while True:
        if t.data in ("conditionalor", "conditionaland") and len(t.children) == 2:
            items: list[lark.Tree] = []
            data = t.data
            while isinstance(t, lark.Tree) and t.data == data and len(t.children) == 2:
                items.insert(0, t.children[1])
                t = t.children[0]
            items.insert(0, t)
            return [(text(i), mark(i)) for i in items]
        if t.data in _WRAPPERS and len(t.children) == 1 and isinstance(t.children[0], lark.Tree):
            t = t.children[0]
            continue
        if t.data == "paren_expr":
            t = t.children[0]
            continue
        break
    return [(text(tree), tree)]
