"""cel-python (`celpy`) as an evaluator of `when` expressions, for tests and benchmarks only.

It is no longer the reference semantics (that is the CEL specification, checked against
cel-cpp in test_cel_differential.py); it stays to show where cel-python differs (listed in
docs/language.md) and for the benchmark's comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from celpy import celtypes
from celpy.celparser import CELParseError

from mcp_defense.policy import schema
from mcp_defense.policy.cel import CelEnv, CelError, CelEvalError


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
