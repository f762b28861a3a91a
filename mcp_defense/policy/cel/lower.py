"""Lowering: a checked expression becomes a closure `fn(ctx, loc=None)` over plain values,
with everything the compile-time constants decide folded away.

`ctx` is the runtime's context object (attributes `call`, `flow`, `agent`, `session`,
`archetype`, `vars`, `witness`), `loc` a list holding the comprehension variables of the current
evaluation, so one closure is safe to run from many threads at once.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from mcp_defense.policy import schema
from mcp_defense.policy.cel.check import _ORDERED, _Checker
from mcp_defense.policy.cel.runtime import (
    CelEvalError,
    Fn,
    _add_i,
    _add_l,
    _add_s,
    _div_i,
    _dyn_bool,
    _dyn_contains,
    _dyn_eq,
    _dyn_ge,
    _dyn_gt,
    _dyn_has,
    _dyn_in,
    _dyn_index,
    _dyn_le,
    _dyn_lt,
    _dyn_ne,
    _dyn_not,
    _dyn_range,
    _dyn_select,
    _dyn_size,
    _error,
    _identity,
    _list_index,
    _map_index,
    _matches,
    _mod_i,
    _mul_i,
    _neg_i,
    _range,
    _re2_compile,
    _result_check,
    _sub_i,
    _swap2,
    _to_double,
    _to_int,
    _to_string,
    _unary_call,
    _witness,
)
from mcp_defense.policy.cel.syntax import CelError, Parsed, _Node
from mcp_defense.policy.cel.types import (
    _CONVERSIONS,
    _FUNCTIONS,
    _RECORDS,
    _T,
    CelEnv,
    _is_list,
    _is_map,
    _tname,
)

# Lowering


_FAILS = 1
"""`_Lo.raises`: the closure may raise `CelEvalError` (an error value of CEL)."""


@dataclass(frozen=True, slots=True)
class Lowered:
    """A lowered expression. `fn(ctx)` evaluates it; when `const`, it folded to `value`."""

    fn: Callable[..., Any]
    const: bool = False
    value: Any = None
    type: str = "dyn"


@dataclass(slots=True)
class _Lo:
    fn: Fn  # fn(ctx, loc=None)
    const: bool = False
    value: Any = None
    err: CelEvalError | None = None  # folded to this error
    raises: int = 0  # _FAILS when fn may raise CelEvalError
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
    msg = str(e)

    def f(ctx: Any, loc: Any = None) -> Any:
        raise CelEvalError(msg)

    return _Lo(f, err=e, raises=_FAILS, t=t)


def _gather(parts: Sequence[_Lo]) -> Callable[[Any, Any], list[Any]]:
    """Evaluate operands left to right; the first error is the result."""
    fns = tuple(p.fn for p in parts)

    def g(ctx: Any, loc: Any) -> list[Any]:
        return [f(ctx, loc) for f in fns]

    return g


def _bin(lf: Fn, rf: Fn, op: Callable[[Any, Any], Any]) -> Fn:
    def f(ctx: Any, loc: Any = None) -> Any:
        return op(lf(ctx, loc), rf(ctx, loc))

    return f


def _as_bool(lo: _Lo) -> _Lo:
    """A dyn operand where CEL needs a bool: anything else is an error value."""
    inner = lo.fn

    def f(ctx: Any, loc: Any = None) -> Any:
        return _dyn_bool(inner(ctx, loc))

    out = _Lo(f, ctxfree=lo.ctxfree, free=lo.free, raises=_FAILS, chain=lo.chain, t="bool")
    if lo.ufn is not None:
        iu = lo.ufn
        out.ufn, out.uvar = (lambda e: _dyn_bool(iu(e))), lo.uvar
    return out


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
                raise _error(f"call failed: {ex}") from ex
            if r.__class__ is str:
                return r == k
            return checked(r) == k

        return ueq

    def une(e: Any) -> Any:
        try:
            r = impl(e)
        except Exception as ex:
            raise _error(f"call failed: {ex}") from ex
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
            raise _error(f"call failed: {ex}") from ex
        if r is True:
            return False
        if r is False:
            return True
        return not checked(r)

    return unot


def _bool_logic(af: Fn, bf: Fn, is_and: bool) -> Fn:
    """`a && b` / `a || b` for two bool-typed operands that may fail with an error value:
    the decisive value wins over an error on either side, otherwise the error stands."""
    if is_and:

        def fand(ctx: Any, loc: Any = None) -> Any:
            try:
                x = af(ctx, loc)
            except CelEvalError as e:
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
            x = ex
        if x is True:
            return True
        y = bu(e)
        if x is False or y is True:
            return y
        raise x

    return uor


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
        lo: _Lo = getattr(self, "l_" + n.kind)(n)
        return lo

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
        if name in ("call", "agent", "session"):  # always set where they are in scope

            def r(ctx: Any, loc: Any = None) -> Any:
                return g(ctx)

            return _Lo(r, ctxfree=False, chain=name, attrpath=name, t=n.t)

        def rn(ctx: Any, loc: Any = None) -> Any:
            v = g(ctx)
            if v is None:
                raise CelEvalError(f"no value for {name!r}")
            return v

        return _Lo(rn, ctxfree=False, chain=name, attrpath=name, raises=_FAILS, t=n.t)

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
                    return _const_err(_error(f"no such member {name!r}"), n.t)
                return _const(v, n.t)
            if o.attrpath is not None and ot != "Vars":
                path = f"{o.attrpath}.{name}"
                g = operator.attrgetter(path)

                def f(ctx: Any, loc: Any = None) -> Any:
                    try:
                        return g(ctx)
                    except AttributeError:
                        raise _error(f"no such member {path!r}") from None

                # `call`, `agent` and `session` are always set where they are in scope (the
                # table builds them); `flow` may be missing, which is an error value.
                trusted = path.split(".", 1)[0] in ("call", "agent", "session")
                return _Lo(
                    f,
                    ctxfree=False,
                    chain=chain,
                    attrpath=path,
                    raises=0 if trusted else _FAILS,
                    getter=g if trusted else None,
                    t=n.t,
                )
            of = o.fn

            def fr(ctx: Any, loc: Any = None) -> Any:
                rec = of(ctx, loc)
                try:
                    return rec[name] if isinstance(rec, Mapping) else getattr(rec, name)
                except (KeyError, AttributeError):
                    raise _error(f"no such member {name!r}") from None

            return self.fin(
                _Lo(fr, ctxfree=o.ctxfree, free=o.free, raises=o.raises | _FAILS, chain=chain), n.t
            )
        of = o.fn
        if _is_map(ot) and o.getter is not None:
            og = o.getter

            def fmg(ctx: Any, loc: Any = None) -> Any:
                try:
                    return og(ctx)[name]
                except KeyError:
                    raise _error(f"no such member in mapping: {name!r}") from None

            return _Lo(fmg, ctxfree=False, raises=_FAILS, chain=chain, t=n.t)
        if _is_map(ot):

            def fm(ctx: Any, loc: Any = None) -> Any:
                m = of(ctx, loc)
                try:
                    return m[name]
                except KeyError:
                    raise _error(f"no such member in mapping: {name!r}") from None

            return self.fin(
                _Lo(fm, ctxfree=o.ctxfree, free=o.free, raises=o.raises | _FAILS, chain=chain), n.t
            )

        def fd(ctx: Any, loc: Any = None) -> Any:
            return _dyn_select(of(ctx, loc), name)

        return self.fin(
            _Lo(fd, ctxfree=o.ctxfree, free=o.free, raises=o.raises | _FAILS, chain=chain), n.t
        )

    def l_index(self, n: _Node) -> _Lo:
        o, i = self.lo(n.kids[0]), self.lo(n.kids[1])
        ot, it = n.kids[0].t, n.kids[1].t
        op: Callable[[Any, Any], Any]
        if _is_list(ot) and it == "int":
            op = _list_index
        elif _is_map(ot) and it == "string":
            op = _map_index
        else:
            op = _dyn_index
        return self.fin(self._binop(o, i, op, _FAILS), n.t)

    def _binop(self, a: _Lo, b: _Lo, op: Callable[[Any, Any], Any], extra: int) -> _Lo:
        if b.const and b.err is None:
            fn = _bin_const(a, b.value, op)
        else:
            fn = _bin(a.fn, b.fn, op)
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
        raises = _FAILS
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
                    raise _error(f"{name}(): {ex}") from ex
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
                raise _error(f"{name}(): {ex}") from ex
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
        args = self._typed_args(f, n.kids, args)
        return self.fin(self._call(n, name, self._impl(n, name), f.result, args), n.t)

    @staticmethod
    def _typed_args(f: schema.Function, kids: Sequence[_Node], args: list[_Lo]) -> list[_Lo]:
        return [
            _string_typed(a, f.name) if k.t == "dyn" and want == "string" else a
            for want, k, a in zip(f.params, kids, args, strict=True)
        ]

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
            return self._unary(a, _dyn_size, _FAILS)
        return self._unary(a, len, 0)

    def _conversion(self, name: str, a: _Lo, t: _T) -> _Lo:
        if name == "int":
            if t == "int":
                return a
            return self._unary(a, _to_int, 0 if t == "bool" else _FAILS)
        if name == "double":
            if t == "double":
                return a
            return self._unary(a, _to_double, _FAILS if t in ("string", "dyn") else 0)
        return self._unary(a, _to_string, 0)

    def _string_method(self, name: str, recv: _Lo, arg: _Lo, rt: _T, arg_node: _Node) -> _Lo:
        static = rt == "string" and arg_node.t == "string"
        if name == "matches":
            if arg.const and isinstance(arg.value, str) and arg.err is None:
                rx = _re2_compile(arg.value)

                def m1(s: Any, p: Any) -> bool:
                    if not isinstance(s, str):
                        raise _error("no such overload for matches()")
                    try:
                        return rx.search(s) is not None
                    except ValueError as e:
                        raise _error(f"return error for overflow: {e}") from None

                return self._binop(recv, arg, m1, _FAILS)
            return self._binop(recv, arg, _matches, _FAILS)
        if name == "contains":
            if static:
                return self._binop(recv, arg, _contains, 0)
            return self._binop(recv, arg, _dyn_contains, _FAILS)
        meth = str.startswith if name == "startsWith" else str.endswith
        if static:
            return self._binop(recv, arg, meth, 0)

        def opd(s: Any, x: Any) -> bool:
            if isinstance(s, str) and isinstance(x, str):
                return meth(s, x)
            raise _error(f"no such overload for {name}()")

        return self._binop(recv, arg, opd, _FAILS)

    def l_method(self, n: _Node) -> _Lo:
        name = n.a
        recv = self.lo(n.kids[0])
        args = [self.lo(k) for k in n.kids[1:]]
        rt = n.kids[0].t
        f = _FUNCTIONS.get(name)
        if f is not None:
            impl = self._impl(n, name)
            args = self._typed_args(f, n.kids[1:], args)
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
        kind = n.a
        if kind != "map" and n.kids[1].t != "bool":
            body = _as_bool(body)  # a predicate must be a bool: anything else is an error
        d = n.depth
        rt = n.kids[0].t
        rf = rng.fn if rt != "dyn" else _dyn_range(rng.fn)
        free = rng.free | (body.free - {d})
        ctxfree = rng.ctxfree and body.ctxfree
        unary = body.ufn if body.ufn is not None and body.uvar == d and body.free == {d} else None
        bf = body.fn
        raises = rng.raises | (_FAILS if rt == "dyn" else 0) | body.raises
        if kind in ("exists", "all"):
            getter = rng.getter if rt != "dyn" else None
            fn = self._exists_all(
                kind == "exists", rf, getter, bf, unary, d, body.raises == 0, n.b, rng.chain
            )
        else:
            fn = {"exists_one": self._exists_one, "map": self._map, "filter": self._filter}[kind](
                rf, bf, unary, d, bool(body.raises), n.b, rng.chain
            )
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
        var: str,
        chain: str | None,
    ) -> Fn:
        """CEL's `exists`/`all`: stop at the first deciding element (true for `exists`, false
        for `all`), which also absorbs the errors of other elements; with none, the first
        error is the result."""
        stop = is_exists
        if unary is not None:
            # The common shapes, one frame per element: `items` is read with the attribute
            # getter when the range is a fact (`call.paths`). At the top level these loops do
            # not check the run-time budget: their body is one call or comparison per element
            # (no loop: a comprehension is never a one-variable body), so the static cost
            # bounds them; nested in another comprehension they check it on entry.
            p = unary
            g: Callable[[Any], Any] = getter if getter is not None else _no_loc(rf)
            if clean:  # no error of any kind, always a bool
                if is_exists:

                    def f(ctx: Any, loc: Any = None) -> Any:
                        for e in g(ctx) if loc is None else _range(rf(ctx, loc), ctx, True):
                            if p(e):
                                _witness(ctx, var, chain, e)
                                return True
                        return False

                    return f

                def fa(ctx: Any, loc: Any = None) -> Any:
                    for e in g(ctx) if loc is None else _range(rf(ctx, loc), ctx, True):
                        if not p(e):
                            return False
                    return True

                return fa

            def fe(ctx: Any, loc: Any = None) -> Any:
                err: CelEvalError | None = None
                for e in g(ctx) if loc is None else _range(rf(ctx, loc), ctx, True):
                    try:
                        r = p(e)
                    except CelEvalError as ex:
                        err = err or ex
                        continue
                    if r is stop:
                        if stop:
                            _witness(ctx, var, chain, e)
                        return stop
                if err is not None:
                    raise err
                return not stop

            return fe
        if clean:
            if is_exists:

                def fl(ctx: Any, loc: Any = None) -> Any:
                    l2 = [None] * (d + 1) if loc is None else [*loc, None]
                    for e in _range(rf(ctx, loc), ctx, loc is not None):
                        l2[d] = e
                        if bf(ctx, l2):
                            _witness(ctx, var, chain, e)
                            return True
                    return False

                return fl

            def fla(ctx: Any, loc: Any = None) -> Any:
                l2 = [None] * (d + 1) if loc is None else [*loc, None]
                for e in _range(rf(ctx, loc), ctx, loc is not None):
                    l2[d] = e
                    if not bf(ctx, l2):
                        return False
                return True

            return fla

        def fg(ctx: Any, loc: Any = None) -> Any:
            l2 = [None] * (d + 1) if loc is None else [*loc, None]
            err: CelEvalError | None = None
            for e in _range(rf(ctx, loc), ctx, loc is not None):
                l2[d] = e
                try:
                    r = bf(ctx, l2)
                except CelEvalError as ex:
                    err = err or ex
                    continue
                if r is stop:
                    if stop:
                        _witness(ctx, var, chain, e)
                    return stop
            if err is not None:
                raise err
            return not stop

        return fg

    @staticmethod
    def _body_runner(bf: Fn, unary: Fn | None, d: int) -> Callable[[Any, Any, Any], Any]:
        if unary is not None:
            u = unary

            def run_u(e: Any, ctx: Any, l2: Any) -> Any:
                return u(e)

            return run_u

        def run(e: Any, ctx: Any, l2: Any) -> Any:
            l2[d] = e
            return bf(ctx, l2)

        return run

    def _exists_one(
        self, rf: Fn, bf: Fn, unary: Fn | None, d: int, can_fail: bool, var: str, chain: str | None
    ) -> Fn:
        """CEL's `exists_one`: every element is evaluated (an error anywhere is the result)."""
        run = self._body_runner(bf, unary, d)

        def f(ctx: Any, loc: Any = None) -> Any:
            l2 = None if unary is not None else ([None] * (d + 1) if loc is None else [*loc, None])
            count = 0
            first = None
            for e in _range(rf(ctx, loc), ctx, loc is not None):
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
            l2 = None if unary is not None else ([None] * (d + 1) if loc is None else [*loc, None])
            return [run(e, ctx, l2) for e in _range(rf(ctx, loc), ctx, loc is not None)]

        return f

    def _filter(
        self, rf: Fn, bf: Fn, unary: Fn | None, d: int, can_fail: bool, var: str, chain: str | None
    ) -> Fn:
        run = self._body_runner(bf, unary, d)

        def f(ctx: Any, loc: Any = None) -> Any:
            l2 = None if unary is not None else ([None] * (d + 1) if loc is None else [*loc, None])
            return [e for e in _range(rf(ctx, loc), ctx, loc is not None) if run(e, ctx, l2)]

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
        if _is_map(ot) and o.getter is not None:
            og = o.getter

            def fg(ctx: Any, loc: Any = None) -> Any:
                return name in og(ctx)

            return _Lo(fg, ctxfree=False, t="bool")
        if ot in _RECORDS:

            def fr(ctx: Any, loc: Any = None) -> Any:
                v = of(ctx, loc)
                return name in v if isinstance(v, Mapping) else hasattr(v, name)

            return self.fin(_Lo(fr, ctxfree=o.ctxfree, free=o.free, raises=o.raises), "bool")
        if _is_map(ot):

            def fm(ctx: Any, loc: Any = None) -> Any:
                return name in of(ctx, loc)

            return self.fin(_Lo(fm, ctxfree=o.ctxfree, free=o.free, raises=o.raises), "bool")

        def f(ctx: Any, loc: Any = None) -> Any:
            return _dyn_has(of(ctx, loc), name)

        return self.fin(_Lo(f, ctxfree=o.ctxfree, free=o.free, raises=_FAILS), "bool")

    def l_not(self, n: _Node) -> _Lo:
        a = self.lo(n.kids[0])
        if n.kids[0].t == "bool":
            lo = self._unary(a, operator.not_, 0)
        else:
            lo = self._unary(a, _dyn_not, _FAILS)
        return self.fin(lo, "bool")

    def l_neg(self, n: _Node) -> _Lo:
        a = self.lo(n.kids[0])
        if n.t == "int":
            return self.fin(self._unary(a, _neg_i, _FAILS), n.t)
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
            return self.fin(self._binop(a, b, _dyn_eq if op == "==" else _dyn_ne, 0), n.t)
        if op in ("<", "<=", ">", ">="):
            if static:
                pyop = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[
                    op
                ]
                return self.fin(self._binop(a, b, pyop, 0), n.t)
            dop = {"<": _dyn_lt, "<=": _dyn_le, ">": _dyn_gt, ">=": _dyn_ge}[op]
            return self.fin(self._binop(a, b, dop, _FAILS), n.t)
        if op == "in":
            return self.fin(self._in(a, b, lt, rt), n.t)
        if lt == "int":
            iop = {"+": _add_i, "-": _sub_i, "*": _mul_i, "/": _div_i, "%": _mod_i}[op]
            return self.fin(self._binop(a, b, iop, _FAILS), n.t)
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
        return self._binop(a, b, _dyn_in, _FAILS)

    def l_and(self, n: _Node) -> _Lo:
        return self._logic(n, True)

    def l_or(self, n: _Node) -> _Lo:
        return self._logic(n, False)

    def _logic(self, n: _Node, is_and: bool) -> _Lo:
        """CEL's commutative `&&`/`||`: a decisive operand (false for `&&`, true for `||`) wins
        over an error on either side; operands that are not bools are errors."""
        a, b = self.lo(n.kids[0]), self.lo(n.kids[1])
        if n.kids[0].t != "bool":
            a = _as_bool(a)
        if n.kids[1].t != "bool":
            b = _as_bool(b)
        decisive = not is_and  # false for &&, true for ||
        # Folding: `true && x` is x, `false && x` is false, ...
        if a.const and a.err is None:
            if a.value is (not decisive):
                return b
            if a.value is decisive:
                return _const(decisive, "bool")
        if b.const and b.err is None:
            if b.value is (not decisive):
                return a
            if b.value is decisive:
                return _const(decisive, "bool")
        af, bf = a.fn, b.fn
        if a.raises == 0 and b.raises == 0:
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

            lo = _Lo(f, ctxfree=a.ctxfree and b.ctxfree, free=a.free | b.free)
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
        if a.raises == 0:
            # A plain bool on the left decides alone or hands over: `true && y` is exactly y.
            gl: Callable[[Any], Any] = a.getter if a.getter is not None else _no_loc(af)
            if is_and:

                def fl(ctx: Any, loc: Any = None) -> Any:
                    if gl(ctx) if loc is None else af(ctx, loc):
                        return bf(ctx, loc)
                    return False
            else:

                def fl(ctx: Any, loc: Any = None) -> Any:
                    if gl(ctx) if loc is None else af(ctx, loc):
                        return True
                    return bf(ctx, loc)

            return self.fin(
                _Lo(
                    fl,
                    ctxfree=a.ctxfree and b.ctxfree,
                    free=a.free | b.free,
                    raises=b.raises,
                ),
                n.t,
            )
        lo = _Lo(
            _bool_logic(af, bf, is_and),
            ctxfree=a.ctxfree and b.ctxfree,
            free=a.free | b.free,
            raises=_FAILS,
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

    def l_cond(self, n: _Node) -> _Lo:
        c, t, e = (self.lo(k) for k in n.kids)
        if c.const and c.err is None:
            if c.value is True:
                return t
            if c.value is False:
                return e
        cf, tf, ef = c.fn, t.fn, e.fn

        def f(ctx: Any, loc: Any = None) -> Any:
            v = cf(ctx, loc)
            if v is True:
                return tf(ctx, loc)
            if v is False:
                return ef(ctx, loc)
            raise CelEvalError("found no matching overload for _?_:_")

        return self.fin(
            _Lo(
                f,
                ctxfree=c.ctxfree and t.ctxfree and e.ctxfree,
                free=c.free | t.free | e.free,
                raises=_FAILS if n.kids[0].t != "bool" else (c.raises | t.raises | e.raises),
            ),
            n.t,
        )


def _no_loc(fn: Fn) -> Callable[[Any], Any]:
    """`fn` outside any comprehension, as a one-argument getter (a closure: `partial` with a
    keyword is slower on the hot path)."""

    def g(ctx: Any) -> Any:
        return fn(ctx, None)

    return g


def _contains(s: str, x: str) -> bool:
    return x in s


def _string_typed(lo: _Lo, fname: str) -> _Lo:
    """A dyn argument of a function declared on strings: CEL resolves the overload at run
    time, so any other value is "no matching overload" (an error), never a call."""
    inner = lo.fn

    def f(ctx: Any, loc: Any = None) -> Any:
        v = inner(ctx, loc)
        if isinstance(v, str):
            return v
        raise CelEvalError(f"found no matching overload for {fname}({type(v).__name__})")

    return _Lo(f, ctxfree=lo.ctxfree, free=lo.free, raises=_FAILS)


def lower(
    tree: Parsed, env: CelEnv, constants: Mapping[str, Any], *, checked: bool = False
) -> Lowered:
    """Check `tree` and lower it to `fn(ctx)`, folding everything `constants` decides.

    `constants` maps top-level variables known at compile time (`archetype`, `vars`) to their
    values. Raises `CelError` for static problems and `CelEvalError` when the whole expression
    folds to an error (it would fail on every call). `checked`: the last `check` of `tree` was
    against this same `env` (the compiler's, once per rule), so its annotations stand — a
    rule is lowered once per archetype and would otherwise be re-checked each time.
    """
    n = tree.root
    t = n.t if checked else _Checker(env).check(n, {})
    lo = _Lowerer(env, constants).lo(n)
    if lo.err is not None:
        raise lo.err.__class__(str(lo.err))
    if lo.const:
        return Lowered(lo.fn, True, lo.value, _tname(t))
    # A bare fact (`call.writes`) is just its attribute getter.
    return Lowered(lo.getter or lo.fn, False, None, _tname(t))
