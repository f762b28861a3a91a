"""Parsing: cel-python's own grammar (`cel.lark`) through lark, then a compact AST with
positions (`_Node`) for the checker, the cost model and the lowering."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lark
from celpy import celtypes
from celpy.celparser import tree_dump
from celpy.evaluation import celstr
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from mcp_defense.policy.cel.types import _MACROS, _REJECTED_FUNCTIONS, _T

Tree = lark.Tree[Any]
"""A parse tree in cel-python's shape (`parse`, `clauses`)."""


class CelError(Exception):
    """A static problem in an expression: syntax, types, unsupported forms. Positions are
    1-based and relative to the expression source."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column


# Parsing: celpy's grammar, then a compact AST with positions


_SRC_ATTR = "_mcpd_cel_source"
_NODE_ATTR = "_mcpd_cel_node"
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


MAX_SOURCE_LENGTH = 100_000
"""Longest `when` source, in characters (cel-go's default expression size limit): parsing is
linear but slow in pure Python (about 8 µs a character)."""


def parse(source: str) -> Tree:
    """Parse with cel-python's grammar; a syntax error is a `CelError` at its position, and
    so is a source longer than `MAX_SOURCE_LENGTH` or nested deeper than `MAX_NESTING`."""
    if len(source) > MAX_SOURCE_LENGTH:
        line, col = _linecol(source, MAX_SOURCE_LENGTH)
        raise CelError(
            f"expression too long: {len(source):,} characters, the limit is "
            f"{MAX_SOURCE_LENGTH:,}; split it into rules",
            line,
            col,
        )
    try:
        tree = _parser().parse(source)
    except UnexpectedCharacters as e:
        pos = e.pos_in_stream
        ch = source[pos] if pos is not None and 0 <= pos < len(source) else ""
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
    _check_nesting(tree)
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
"""Grammar levels that only wrap their single child."""

MAX_NESTING = 64
"""Deepest nesting of a `when`: parentheses, operators, calls, indexes, macros and literals
each open a level; a chain of one `&&` or `||` operator is a single level."""

_NESTS = frozenset(
    {
        "paren_expr",
        "member_dot",
        "member_dot_arg",
        "member_index",
        "member_object",
        "ident_arg",
        "dot_ident_arg",
        "list_lit",
        "map_lit",
    }
)
_OPERATORS = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary"}
)
_CHAINS = frozenset({"conditionalor", "conditionaland"})
_SHORT_CHAIN = 16  # longer chains of one && / || are balanced


def _check_nesting(tree: Tree) -> None:
    """Refuse expressions nested deeper than `MAX_NESTING`, before anything recurses on them:
    the checker, the lowering and the closures recurse once per level."""
    stack: list[tuple[Tree, int, str]] = [(tree, 0, "")]
    while stack:
        t, depth, parent = stack.pop()
        data = t.data
        if data in _NESTS or (
            data in _OPERATORS and len(t.children) > 1 and not (data in _CHAINS and parent == data)
        ):
            depth += 1
            if depth > MAX_NESTING:
                m = t.meta
                line = 1 if getattr(m, "empty", True) else m.line
                col = 1 if getattr(m, "empty", True) else m.column
                raise CelError(
                    f"expression nested too deeply: more than {MAX_NESTING} levels of "
                    "parentheses, operators, calls or macros; split it into rules or clauses",
                    line,
                    col,
                )
        for c in t.children:
            if isinstance(c, lark.Tree):
                stack.append((c, depth, data))


class _Converter:
    """lark Tree (celpy's shape) → `_Node`."""

    def __init__(self, src: str | None) -> None:
        self.src = src
        self._newlines: list[int] | None = None

    def linecol(self, offset: int) -> tuple[int, int]:
        """`_linecol` in O(log n): a chain of thousands of operators asks for each one."""
        assert self.src is not None
        if self._newlines is None:
            self._newlines = [i for i, c in enumerate(self.src) if c == "\n"]
        k = bisect.bisect_left(self._newlines, offset)
        return k + 1, offset - (self._newlines[k - 1] + 1 if k else 0) + 1

    def pos(self, t: Tree | lark.Token) -> tuple[int, int, int, int]:
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
        at: Tree | lark.Token,
        kids: tuple[_Node, ...] = (),
        a: Any = None,
        b: Any = None,
    ) -> _Node:
        line, col, start, end = self.pos(at)
        return _Node(kind, line, col, kids, a, b, start, end)

    def op_pos(self, left: Tree, right: Tree) -> tuple[int, int] | None:
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
                return self.linecol(i)
        return None

    def err(self, msg: str, at: Tree | lark.Token) -> CelError:
        line, col, _, _ = self.pos(at)
        return CelError(msg, line, col)

    def conv(self, t: Tree) -> _Node:
        paren: Tree | None = None  # the outermost parentheses around this node
        while True:  # wrappers and parentheses in a loop: no recursion per level
            if t.data in _WRAPPERS and len(t.children) == 1:
                t = t.children[0]
            elif t.data == "paren_expr":
                paren = paren or t
                t = t.children[0]
            else:
                break
        n = self.conv1(t)
        if paren is not None:
            n.start, n.end = self.pos(paren)[2:]
        return n

    def conv1(self, t: Tree) -> _Node:
        data = t.data
        ch = t.children
        if data == "expr":
            return self.node("cond", t, (self.conv(ch[0]), self.conv(ch[1]), self.conv(ch[2])))
        if data in _CHAINS:
            return self.chain(t)
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
            assert isinstance(name, lark.Token)
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
            assert isinstance(name, lark.Token)
            return self.call(t, name, args)
        if data == "ident":
            return self.node("ident", t, a=str(ch[0]))
        if data == "list_lit":
            kids = tuple(self.conv(e) for e in ch[0].children) if ch else ()
            return self.node("list", t, kids)
        if data == "map_lit":
            return self.map_lit(t)
        if data == "literal":
            return self.literal(t)
        raise self.err(f"unsupported syntax {data!r}", t)

    def chain(self, t: Tree) -> _Node:
        """`a || b || c ...` as a balanced tree (same value: the operators are associative),
        so a chain of thousands of terms is shallow for the checker and the closures."""
        data = t.data
        items: list[Tree] = []
        x: Any = t
        while isinstance(x, lark.Tree) and x.data == data and len(x.children) == 2:
            items.append(x.children[1])
            x = x.children[0]
        items.append(x)
        items.reverse()
        nodes = [self.conv(i) for i in items]
        kind = "or" if data == "conditionalor" else "and"
        return self._build(kind, items, nodes, 0, len(nodes))

    # Methods, not closures in `chain`: a recursive closure is a reference cycle, garbage
    # that only the cyclic collector frees (it is paused while a policy compiles).
    def _join(
        self, kind: str, items: list[Tree], left: _Node, right: _Node, lo: int, mid: int, hi: int
    ) -> _Node:
        line, col = self.op_pos(items[mid - 1], items[mid]) or (left.line, left.col)
        start = self.pos(items[lo])[2]
        end = self.pos(items[hi - 1])[3]
        return _Node(kind, line, col, (left, right), start=start, end=end)

    def _build(self, kind: str, items: list[Tree], nodes: list[_Node], lo: int, hi: int) -> _Node:
        if hi - lo <= _SHORT_CHAIN:  # left to right, as written (the lowering's fast paths)
            n = nodes[lo]
            for i in range(lo + 1, hi):
                n = self._join(kind, items, n, nodes[i], lo, i, i + 1)
            return n
        mid = (lo + hi) // 2
        left = self._build(kind, items, nodes, lo, mid)
        right = self._build(kind, items, nodes, mid, hi)
        return self._join(kind, items, left, right, lo, mid, hi)

    def _at_op(self, n: _Node, left: Tree, right: Tree) -> None:
        p = self.op_pos(left, right)
        if p is not None:
            n.line, n.col = p

    def args(self, exprlist: Tree | None) -> list[Tree]:
        return list(exprlist.children) if exprlist is not None else []

    def method(self, t: Tree, operand: Tree, name: lark.Token, args: list[Tree]) -> _Node:
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

    def call(self, t: Tree, name: lark.Token, args: list[Tree]) -> _Node:
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

    def map_lit(self, t: Tree) -> _Node:
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

    def literal(self, t: Tree) -> _Node:
        tok = t.children[0]
        assert isinstance(tok, lark.Token)
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


def _convert(tree: Tree) -> _Node:
    """The AST of a parse tree, converted once: `check`, `estimate_cost` and `lower` each ask
    for it (the checker re-annotates it on every call)."""
    n: _Node | None = getattr(tree, _NODE_ATTR, None)
    if n is None:
        n = _Converter(getattr(tree, _SRC_ATTR, None)).conv(tree)
        setattr(tree, _NODE_ATTR, n)
    return n


# ---------------------------------------------------------------------------------------------
# Clauses, for `policy explain`


def conjuncts(tree: Tree) -> list[tuple[str, Tree]]:
    """Top-level `&&` conjuncts only: each must hold for the expression to be true (a rule
    may be indexed or skipped on one). An `||` at the top is one clause: the whole."""
    t = tree
    while True:
        if t.data == "conditionalor" and len(t.children) == 2:
            return [(_whole(tree), tree)]
        if t.data == "conditionaland" and len(t.children) == 2:
            return clauses(tree)
        if t.data in _WRAPPERS and len(t.children) == 1 and isinstance(t.children[0], lark.Tree):
            t = t.children[0]
            continue
        if t.data == "paren_expr":
            t = t.children[0]
            continue
        return clauses(tree)


def _whole(tree: Tree) -> str:
    src: str | None = getattr(tree, _SRC_ATTR, None)
    m = tree.meta
    if src is not None and not getattr(m, "empty", True):
        return src[m.start_pos : m.end_pos]
    return str(tree_dump(tree))


def clauses(tree: Tree) -> list[tuple[str, Tree]]:
    """Top-level `&&` conjuncts (or, failing that, `||` disjuncts) with their source text.

    Outer parentheses are looked through; a single clause is the whole expression. The
    subtrees can be passed to `check`/`lower` like whole expressions.
    """
    src: str | None = getattr(tree, _SRC_ATTR, None)

    def text(t: Tree) -> str:
        m = t.meta
        if src is not None and not getattr(m, "empty", True):
            return src[m.start_pos : m.end_pos]
        return str(tree_dump(t))

    def mark(t: Tree) -> Tree:
        if src is not None:
            setattr(t, _SRC_ATTR, src)
        return t

    t = tree
    while True:
        if t.data in ("conditionalor", "conditionaland") and len(t.children) == 2:
            items: list[Tree] = []
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
