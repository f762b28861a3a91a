"""Google's cel-cpp (the `cel-expr-python` bindings) as the oracle of CEL semantics.

The lowered closures must give what cel-cpp gives for every expression the checker accepts:
the same value with the same type, or an error on both sides. Records (`call`, `flow`,
`archetype`, ...) are handed to cel-cpp as maps of their schema fields; the schema's functions
are declared with their real parameter types, and receiver functions and record arguments are
given the activation's own objects (cel-cpp only sees the maps), as the runtime does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from cel_expr_python import cel

from mcp_defense.policy import schema
from mcp_defense.policy.cel import CelEnv, CelEvalError

_T = cel.Type


def _cel_type(name: str) -> Any:
    name = name.strip()
    if name in schema.RECORDS:
        return _T.Map(_T.STRING, _T.DYN)
    if name.startswith("list<"):
        return _T.List(_cel_type(name[5:-1]))
    if name.startswith("map<"):
        return _T.Map(_T.STRING, _cel_type(name[4:-1].split(",", 1)[1]))
    return {
        "string": _T.STRING,
        "bool": _T.BOOL,
        "int": _T.INT,
        "double": _T.DOUBLE,
        "dyn": _T.DYN,
    }[name]


def _plain(v: Any) -> Any:
    """A value as cel-cpp takes it: tuples become lists, records are converted by the caller."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    return v


class CelCpp:
    """One cel-cpp environment for a `CelEnv`: `evaluate(source, activation)` returns a plain
    Python value or raises `CelEvalError`."""

    def __init__(self, env: CelEnv) -> None:
        self.env = env
        self._objects: dict[str, Any] = {}  # record type → the activation's object
        decls = []
        for f in schema.FUNCTIONS:
            impl = env.functions.get(f.name)
            if impl is None:
                continue
            params = [_cel_type(p) for p in f.params]
            if f.receiver is not None:
                params.insert(0, _cel_type(f.receiver))
            overload = cel.Overload(
                f"{f.name}_overload",
                _cel_type(f.result),
                params,
                is_member=f.receiver is not None,
                impl=self._wrap(f, impl),
            )
            decls.append(cel.FunctionDecl(f.name, [overload]))
        variables = {name: _cel_type(rec) for name, rec in schema.VARIABLES.items()}
        variables["vars"] = _T.Map(_T.STRING, _T.STRING)
        self._cel = cel.NewEnv(variables=variables, functions=decls)
        self._compile = lru_cache(maxsize=4096)(self._cel.compile)

    def _wrap(self, f: schema.Function, impl: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            head: tuple[Any, ...] = ()
            if f.receiver is not None:
                head, args = (self._objects[f.receiver],), args[1:]
            fixed = [
                self._objects[p] if p in schema.RECORDS else a
                for p, a in zip(f.params, args, strict=True)
            ]
            return impl(*head, *fixed)

        return call

    def data(self, activation: Mapping[str, Any]) -> dict[str, Any]:
        """Plain activation values → cel-cpp data (records become maps of their fields)."""
        out: dict[str, Any] = {}
        self._objects = {}
        for name, value in activation.items():
            if value is None:
                continue  # an unbound variable: reading it is an error
            rec = schema.VARIABLES.get(name)
            if rec is not None and rec != "Vars":
                self._objects[rec] = value
                if isinstance(value, Mapping):
                    out[name] = _plain(value)
                else:
                    out[name] = {
                        f: _plain(getattr(value, f))
                        for f in self.env.fields(rec)
                        if hasattr(value, f)
                    }
            else:
                out[name] = _plain(value)
        return out

    def evaluate(self, source: str, activation: Mapping[str, Any]) -> Any:
        return self.run(source, self.data(activation))

    def run(self, source: str, data: Mapping[str, Any]) -> Any:
        """Evaluate with data from `data()` (the objects of the last `data()` call are used)."""
        expr = self._compile(source, True)  # our checker has already accepted it
        r = expr.eval(data=dict(data))
        if r.type() == _T.ERROR:
            raise CelEvalError(str(r.value()))
        return r.plain_value()
