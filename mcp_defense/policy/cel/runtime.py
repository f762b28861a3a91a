"""What lowered closures call at run time: the errors they raise, CEL's operators on plain
values (for dyn operands), integer arithmetic, conversions and `matches` on RE2.

Nothing here imports the parser: this is the decision path.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]

Fn = Callable[..., Any]
"""A lowered closure: `fn(ctx, loc=None)`."""


class CelEvalError(Exception):
    """A runtime evaluation error (no such key, division by zero, no matching overload, ...).

    Lowered closures raise it where CEL has an error value: `false && e`, `true || e` and a
    decisive element of `exists`/`all` absorb it, everything else propagates it.
    """


def _error(msg: str) -> CelEvalError:
    return CelEvalError(msg)


EVAL_BUDGET_S = 0.05
"""Run-time budget of the CEL evaluation of one decision, in seconds, on top of the static
cost limit: nested comprehensions check it on entry, comprehensions over more than `_CHUNK`
elements every `_CHUNK` (except top-level `exists`/`all` over a one-variable body, linear
and bounded by the static cost); past it the decision is a deny (`CelBudgetExceeded`)."""

_CHUNK = 16  # comprehension elements between two checks of the budget


class CelBudgetExceeded(TimeoutError):
    """The evaluation ran past `EVAL_BUDGET_S`. Not a `CelEvalError`: no `||`, `&&` or
    `exists` may absorb it; the decision is a deny (fail closed). A `TimeoutError`, so the
    decision table catches it without importing the compiler."""


def _checkpoint(ctx: Any) -> None:
    """Start the decision's clock on its first call, raise once it has run out. Only contexts
    whose class says `budgeted` (the table's EvalCtx, one per decision) have a budget."""
    try:
        deadline = ctx.deadline
    except AttributeError:
        if getattr(ctx, "budgeted", False):
            ctx.deadline = time.perf_counter() + EVAL_BUDGET_S
        return
    if time.perf_counter() > deadline:
        raise CelBudgetExceeded(
            f"the CEL evaluation ran past its budget of {EVAL_BUDGET_S * 1000:.0f} ms"
        )


def _budgeted(items: Iterable[Any], ctx: Any) -> Iterable[Any]:
    """`items`, checking the budget every `_CHUNK` elements."""
    n = 0
    for e in items:
        n += 1
        if n == _CHUNK:
            n = 0
            _checkpoint(ctx)
        yield e


def _range(items: Any, ctx: Any, nested: bool) -> Any:
    """The elements of a comprehension: as they are for a short range at the top level (no
    cost on the hot path), else with the budget checked on entry and every `_CHUNK`."""
    if nested:
        _checkpoint(ctx)
    if len(items) > _CHUNK:
        return _budgeted(items, ctx)
    return items


# ---------------------------------------------------------------------------------------------
# RE2: the engine of CEL's `matches` (linear time, the same syntax as cel-cpp and cel-go)


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
        raise _error("no such overload for matches()")
    try:
        rx = _re2_cached(pattern)
    except Exception as e:  # re2.error
        raise _error(f"match error: {_re2_msg(e)}") from None
    try:
        return rx.search(text) is not None
    except ValueError as e:  # surrogates cannot be encoded for RE2
        raise _error(f"return error for overflow: {e}") from None


# ---------------------------------------------------------------------------------------------
# CEL's operators on plain values, for dyn operands (and the static paths that need them)


_B, _I, _D, _S, _N, _L, _M, _X = range(8)
_KINDS: dict[type, int] = {
    bool: _B,
    int: _I,
    float: _D,
    str: _S,
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


def _eq(a: Any, b: Any) -> bool:
    """CEL's heterogeneous equality: values of different types are unequal, numbers compare
    across int and double (as doubles, like cel-cpp), lists and maps element by element. Never
    an error."""
    ka, kb = _kind(a), _kind(b)
    if ka == kb:
        if ka == _L:
            return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b, strict=True))
        if ka == _M:
            return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
        if ka == _X:
            return False
        return bool(a == b)
    if (ka == _I and kb == _D) or (ka == _D and kb == _I):
        return float(a) == float(b)
    return False


def _dyn_eq(a: Any, b: Any) -> bool:
    return _eq(a, b)


def _dyn_ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


_ORDER_OK = frozenset({(_I, _I), (_D, _D), (_S, _S), (_B, _B)})


def _ordered(a: Any, b: Any) -> tuple[Any, Any]:
    """Operands of `<`: the same ordered type, or int and double (compared as doubles)."""
    ka, kb = _kind(a), _kind(b)
    if (ka, kb) in _ORDER_OK:
        return a, b
    if (ka == _I and kb == _D) or (ka == _D and kb == _I):
        return float(a), float(b)
    raise _error("no matching overload for ordering")


def _dyn_lt(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x < y)


def _dyn_le(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x <= y)


def _dyn_gt(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x > y)


def _dyn_ge(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x >= y)


def _dyn_in(item: Any, container: Any) -> bool:
    """`in`: equality with some list element, or a key of a map (string keys; a number or bool
    is simply not a key); anything else is no matching overload."""
    kc = _kind(container)
    if kc == _L:
        return any(_eq(c, item) for c in container)
    if kc == _M:
        ki = _kind(item)
        if ki == _S:
            return item in container
        if ki == _I or ki == _D or ki == _B:
            return any(_eq(k, item) for k in container if not isinstance(k, str))
    raise _error("found no matching overload for 'in'")


def _dyn_size(v: Any) -> int:
    k = _kind(v)
    if k == _S or k == _L or k == _M:
        return len(v)
    raise _error("found no matching overload for size()")


def _list_index(c: Sequence[Any], i: Any) -> Any:
    if 0 <= i < len(c):
        return c[i]
    raise _error(f"index out of range: index={i} size={len(c)}")


def _map_index(c: Mapping[str, Any], k: str) -> Any:
    try:
        return c[k]
    except KeyError:
        raise _error(f"no such key: {k!r}") from None


def _dyn_index(c: Any, i: Any) -> Any:
    kc, ki = _kind(c), _kind(i)
    if kc == _L:
        if ki == _I:
            return _list_index(c, i)
        if ki == _D and i.is_integer():
            return _list_index(c, int(i))
        raise _error("index error: expected an integer index")
    if kc == _M:
        if ki == _S and i in c:
            return c[i]
        if ki == _L or ki == _M or ki == _N or ki == _X:
            raise _error("invalid map key type")
        raise _error(f"no such key: {i!r}")
    raise _error("found no matching overload for _[_]")


def _dyn_select(v: Any, name: str) -> Any:
    if _kind(v) == _M:
        try:
            return v[name]
        except KeyError:
            raise _error(f"no such key: {name!r}") from None
    raise _error(f"value does not support field selection .{name}")


def _dyn_has(v: Any, name: str) -> bool:
    if _kind(v) == _M:
        return name in v
    raise _error(f"has() on a value that has no fields: .{name}")


def _dyn_not(v: Any) -> bool:
    if v is True:
        return False
    if v is False:
        return True
    raise _error("found no matching overload for '!'")


def _dyn_bool(v: Any) -> bool:
    """A dyn operand where CEL needs a bool (`&&`, `||`, `?:`, macro predicates)."""
    if v is True or v is False:
        return v
    raise _error(f"no matching overload: a {type(v).__name__} is not a bool")


def _iter_dyn(v: Any) -> Iterable[Any]:
    k = _kind(v)
    if k == _L or k == _M:
        return v  # type: ignore[no-any-return]
    raise _error(f"a {type(v).__name__} cannot be iterated")


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _i64(r: int) -> int:
    if _I64_MIN <= r <= _I64_MAX:
        return r
    raise _error("integer overflow")


def _add_i(a: int, b: int) -> int:
    return _i64(a + b)


def _sub_i(a: int, b: int) -> int:
    return _i64(a - b)


def _mul_i(a: int, b: int) -> int:
    return _i64(a * b)


def _div_i(a: int, b: int) -> int:
    if b == 0:
        raise _error("divide by zero")
    sign = (-1 if a < 0 else 1) * (-1 if b < 0 else 1)
    return _i64(sign * (abs(a) // abs(b)))


def _mod_i(a: int, b: int) -> int:
    if b == 0:
        raise _error("modulus by zero")
    if a == _I64_MIN and b == -1:
        raise _error("integer overflow")
    return _i64((-1 if a < 0 else 1) * (abs(a) % abs(b)))


def _neg_i(a: int) -> int:
    return _i64(-a)


def _add_s(a: str, b: str) -> str:
    return a + b


def _add_l(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    return [*a, *b]


_ASCII_SPACE = " \t\n\r\f\v"
_DECIMAL = re.compile(r"[+-]?[0-9]+")
_TWO63 = 9.223372036854775808e18


def _to_int(v: Any) -> int:
    """CEL's int(): doubles truncate (an error outside int64), strings are decimal."""
    k = _kind(v)
    if k == _I:
        return int(v)
    if k == _B:
        return int(v)  # cel-cpp's runtime has int(bool)
    if k == _D:
        if -_TWO63 < v < _TWO63:
            return int(math.trunc(v))
        raise _error("double out of int64 range")
    if k == _S:
        text = v.strip(_ASCII_SPACE)
        if _DECIMAL.fullmatch(text):
            r = int(text)
            if _I64_MIN <= r <= _I64_MAX:
                return r
        raise _error("cannot convert string to int")
    raise _error(f"found no matching overload for int({type(v).__name__})")


_FLOAT_TEXT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan"
    r"|0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)",
    re.IGNORECASE,
)


def _to_double(v: Any) -> float:
    """CEL's double(): ints convert, strings parse as C's strtod does (hex and inf included)."""
    k = _kind(v)
    if k == _D:
        return float(v)
    if k == _I:
        return float(v)
    if k == _S:
        text = v.strip(_ASCII_SPACE)
        if _FLOAT_TEXT.fullmatch(text):
            if "x" in text.lower() and "inf" not in text.lower():
                return float.fromhex(text)
            return float(text)
        raise _error("cannot convert string to double")
    raise _error(f"found no matching overload for double({type(v).__name__})")


def _format_double(x: float) -> str:
    """cel-cpp's string(double): the shortest digits that round-trip, printed as C's `%g`
    would place them (exponent form below 1e-4 and from 1e6 on)."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digits, exp = Decimal(repr(x)).normalize().as_tuple()
    ds = "".join(map(str, digits))
    e10 = len(ds) - 1 + int(exp)
    neg = "-" if sign else ""
    if -4 <= e10 < 6:
        if e10 >= len(ds) - 1:
            return neg + ds + "0" * (e10 - len(ds) + 1)
        if e10 >= 0:
            return neg + ds[: e10 + 1] + "." + ds[e10 + 1 :]
        return neg + "0." + "0" * (-e10 - 1) + ds
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{neg}{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"


def _to_string(v: Any) -> str:
    """CEL's string() of a string, int or double (the only sources the checker accepts)."""
    k = _kind(v)
    if k == _D:
        return _format_double(v)
    if k == _S or k == _I:
        return str(v)
    raise _error(f"found no matching overload for string({type(v).__name__})")


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


def _string_arg(name: str, s: Any, x: Any) -> None:
    if not isinstance(s, str) or not isinstance(x, str):
        raise _error(f"found no matching overload for {name}()")


def _dyn_contains(s: Any, x: Any) -> bool:
    _string_arg("contains", s, x)
    return x in s


# ---------------------------------------------------------------------------------------------
# Calls of the schema's functions


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
            raise _error(f"{name}() returned {type(r).__name__}, not bool")

        return cb
    if result == "string":

        def cs(r: Any) -> Any:
            if isinstance(r, str):
                return r
            raise _error(f"{name}() returned {type(r).__name__}, not string")

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
                raise _error(f"{name}(): {ex}") from ex
            if r is True or r is False:
                return r
            return checked(r)

        return ub
    if result == "string":

        def us(e: Any) -> Any:
            try:
                r = impl(e)
            except Exception as ex:
                raise _error(f"{name}(): {ex}") from ex
            if r.__class__ is str:
                return r
            return checked(r)

        return us

    def ua(e: Any) -> Any:
        try:
            r = impl(e)
        except Exception as ex:
            raise _error(f"{name}(): {ex}") from ex
        return checked(r)

    return ua
