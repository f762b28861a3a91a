"""What lowered closures call at run time: the errors they raise, CEL's operators on plain
values (for dyn operands), integer arithmetic, conversions and `matches` on RE2.

Nothing here imports the parser: this is the decision path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import re2

Fn = Callable[..., Any]
"""A lowered closure: `fn(ctx, loc=None)`."""


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
