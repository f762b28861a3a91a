"""Static types of CEL expressions and the environment an expression is checked against.

Scalars are CEL type names (`"int"`, `"string"`, ...), records are the names in
`schema.RECORDS` (`"Call"`, `"Flow"`, ...), `("list", T)` and `("map", T)` are lists and
string-keyed maps, and `None` as an element type means "empty literal, unifies with anything".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mcp_defense.policy import schema

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
    return str(t)


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
    "uint": "uint is not supported: no fact is unsigned",
    "bytes": "bytes are not supported: no fact is bytes",
    "timestamp": "timestamps are not supported: no fact is a timestamp",
    "duration": "durations are not supported: no fact is a duration",
    "type": "type() is not supported",
    "dyn": "dyn() is not supported: call.args values are already dyn",
    "list": "list() is not supported",
    "map": "map() is not supported",
    "null_type": "null_type() is not supported",
    "lowerAscii": "lowerAscii() is not available (a strings extension, not standard CEL)",
    "upperAscii": "upperAscii() is not available (a strings extension, not standard CEL)",
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
