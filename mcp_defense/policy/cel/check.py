"""The type checker: every name, field, function and operator of an expression against
`schema`, and the forms this implementation rejects (see docs/language.md)."""

from __future__ import annotations

from collections.abc import Sequence

from mcp_defense.policy import schema
from mcp_defense.policy.cel.runtime import _re2_compile, _re2_msg
from mcp_defense.policy.cel.syntax import CelError, Parsed, _Node
from mcp_defense.policy.cel.types import (
    _CONVERSIONS,
    _FUNCTIONS,
    _NO,
    _RECORDS,
    _REJECTED_FUNCTIONS,
    _SCALARS,
    _STRING_METHODS,
    _T,
    CelEnv,
    _dynfree,
    _eq_ok,
    _is_list,
    _is_map,
    _join,
    _parse_type,
    _tname,
    _unify,
)

# Type checking


class CelUnavailable(CelError):
    """A variable the kind of rule being checked never has (`flow` in a tool-call rule): the
    rule could never evaluate, so it is an error, and the message says where it is available."""


def _unavailable(name: str, scope: frozenset[str]) -> str:
    here = [k for k, s in schema.RULE_SCOPES.items() if s == scope]
    if not here:
        return f"{name!r} is not available here (available: {', '.join(sorted(scope))})"
    where = [schema.RULE_KINDS[k][0] for k, s in schema.RULE_SCOPES.items() if name in s]
    return (
        f"{name!r} is not available in a {' or '.join(schema.RULE_KINDS[k][0] for k in here)}, "
        f"which {schema.RULE_KINDS[here[0]][1]}: {name} is available in "
        f"{' and '.join(where) or 'no rule'} only (here: {', '.join(sorted(scope))})"
    )


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
            raise CelUnavailable(_unavailable(name, self.env.scope), n.line, n.col)
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
            "double": ("int", "double", "string", "dyn"),  # CEL has no double(bool)
            "string": ("string", "int", "double"),
        }[name]
        if t not in allowed:
            raise self.err(n, f"{name}() of {_tname(t)} is not supported")
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
                f"arithmetic on dyn values is not supported: convert first, e.g. int(x) {op} 1",
                n.line,
                n.col,
            )
        if lt == "double" or rt == "double":
            raise CelError(
                "double arithmetic is not supported (no fact is a double; compare instead)",
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
                            "concatenating lists of dyn is not supported",
                            n.line,
                            n.col,
                        )
                    return u
        raise bad


# ---------------------------------------------------------------------------------------------
# check


def check(tree: Parsed, env: CelEnv) -> str:
    """Static type check against `schema`; returns the CEL type name of the expression.

    Raises `CelError` at the offending node for unknown names, fields and functions, wrong
    arity, type errors and the forms this module rejects (see the module docstring).
    """
    n = tree.root
    return _tname(_Checker(env).check(n, {}))


# ---------------------------------------------------------------------------------------------
# Fields that may be absent


class CelWarning(CelError):
    """A finding with a position that does not stop compilation (lint prints it): `field`
    may be absent, `guard` is the `has()` test that would protect it."""

    def __init__(self, message: str, line: int, column: int, field: str, guard: str) -> None:
        super().__init__(message, line, column)
        self.field = field
        self.guard = guard


_Path = tuple[str, ...]


def _path(n: _Node) -> _Path | None:
    """`call.args.x["y"]` → ("call", "args", "x", "y"); None when not a plain access chain.
    Comprehension variables are rooted at their name and depth."""
    if n.kind == "ident":
        return (n.a if n.b is None else f"{n.a}#{n.b}",)
    if n.kind == "select":
        p = _path(n.kids[0])
        return None if p is None else (*p, n.a)
    if n.kind == "index":
        key = n.kids[1]
        if key.kind == "lit" and isinstance(key.a, str):
            p = _path(n.kids[0])
            return None if p is None else (*p, key.a)
    return None


def _show(p: _Path) -> str:
    out = p[0].split("#", 1)[0]
    for k in p[1:]:
        out += f".{k}" if k.isidentifier() else f"[{k!r}]"
    return out


def _may_be_absent(n: _Node) -> bool:
    """A field of a map or dyn value (`call.args.x`, `call.annotations.y`, `item.k`): unlike
    record fields, nothing guarantees it is there."""
    if n.kind == "select" or (n.kind == "index" and _path(n) is not None):
        ot = n.kids[0].t
        return _is_map(ot) or ot == "dyn"
    return False


def _guards(n: _Node, positive: bool) -> set[_Path]:
    """Paths known to be present when `n` evaluates to `positive` (`has(x)`, `"k" in m`,
    `!has(x)` when false, and their conjunctions)."""
    out: set[_Path] = set()
    if n.kind == "has":
        p = _path(n.kids[0])
        if p is not None and positive:
            out.update(p[:i] for i in range(2, len(p) + 1))  # a field and its parents
    elif n.kind == "not":
        out = _guards(n.kids[0], not positive)
    elif (n.kind == "and" and positive) or (n.kind == "or" and not positive):
        for k in n.kids:
            out |= _guards(k, positive)
    elif n.kind == "bin" and n.a == "in" and positive:
        key, container = n.kids
        p = _path(container)
        if key.kind == "lit" and isinstance(key.a, str) and p is not None:
            full = (*p, key.a)
            out.update(full[:i] for i in range(2, len(full) + 1))
    return out


def _operands(n: _Node, kind: str) -> list[_Node]:
    """The operands of a chain of one `&&` or `||`, in order."""
    if n.kind != kind:
        return [n]
    return [x for k in n.kids for x in _operands(k, kind)]


class _Absent:
    """Finds accesses to fields that may be absent and that no `has()` guards: on a call
    without the field the rule fails (`rule_error`), which denies the call."""

    def __init__(self) -> None:
        self.found: dict[_Path, CelWarning] = {}

    def visit(self, n: _Node, known: frozenset[_Path]) -> None:
        k = n.kind
        if k in ("and", "or"):
            # CEL's && and || are commutative over errors: a guard anywhere in the chain
            # protects the other operands (`x.a == 1 && has(x.a)` is false, not an error).
            ops = _operands(n, k)
            gs = [_guards(o, k == "and") for o in ops]
            for i, o in enumerate(ops):
                others = set().union(*(g for j, g in enumerate(gs) if j != i))
                self.visit(o, known | others)
        elif k == "cond":
            c, t, e = n.kids
            self.visit(c, known)
            self.visit(t, known | _guards(c, True))
            self.visit(e, known | _guards(c, False))
        elif k == "has":
            self.visit(n.kids[0].kids[0], known)  # the field tested may be absent, not its parent
        elif _may_be_absent(n):
            self.access(n, known)
        else:
            for kid in n.kids:
                self.visit(kid, known)

    def access(self, n: _Node, known: frozenset[_Path]) -> None:
        chain = [n]
        while _may_be_absent(chain[-1].kids[0]):
            chain.append(chain[-1].kids[0])
        missing = []
        for node in reversed(chain):  # from the root outwards
            p = _path(node)
            if p is not None and p not in known:
                missing.append(p)
        if missing:
            full = _path(n)
            assert full is not None
            if full not in self.found:
                guard = " && ".join(f"has({_show(p)})" for p in missing)
                self.found[full] = CelWarning(
                    f"{_show(full)} may be absent: a call without it makes this rule fail "
                    f"(deny, rule_error); guard it with `{guard} && ...`",
                    n.line,
                    n.col,
                    _show(full),
                    guard,
                )
        self.visit(chain[-1].kids[0], known)


def unguarded(tree: Parsed, env: CelEnv, *, checked: bool = False) -> list[CelWarning]:
    """Warnings for fields of maps and dyn values (`call.args.x`, `call.annotations.y`) read
    without a `has()` (or `"x" in m`) guard, in source order. Raises `CelError` like `check`.
    `checked`: as in `lower`."""
    n = tree.root
    if not checked:
        _Checker(env).check(n, {})
    a = _Absent()
    a.visit(n, frozenset())
    return sorted(a.found.values(), key=lambda w: (w.line, w.column))


def archetype_fields(tree: Parsed) -> frozenset[str] | None:
    """The names read on the compile-time constant `archetype` (`archetype.spawn`, the method
    of `archetype.allows_write(p)`), or None when `archetype` is used any other way (bare, as
    a value): then folding depends on all of it. A comprehension variable of that name is not
    the constant."""
    out: set[str] = set()
    stack: list[tuple[_Node, bool]] = [(tree.root, False)]
    while stack:
        n, shadowed = stack.pop()
        if n.kind == "macro":
            stack.append((n.kids[0], shadowed))
            stack.append((n.kids[1], shadowed or n.b == "archetype"))
            continue
        is_const = not shadowed and n.kind == "ident" and n.a == "archetype"
        if n.kind in ("select", "method") and not shadowed:
            recv = n.kids[0]
            if recv.kind == "ident" and recv.a == "archetype":
                out.add(n.a)
                stack.extend((k, shadowed) for k in n.kids[1:])
                continue
        if is_const:
            return None
        stack.extend((k, shadowed) for k in n.kids)
    return frozenset(out)
