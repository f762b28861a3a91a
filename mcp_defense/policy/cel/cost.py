"""The static cost model: a worst-case bound on the work of one evaluation, checked at
compile time against `COST_LIMIT`."""

from __future__ import annotations

from mcp_defense.policy.cel.check import _Checker
from mcp_defense.policy.cel.syntax import Parsed, _Node
from mcp_defense.policy.cel.types import CelEnv, _is_list, _is_map
from mcp_defense.policy.extract.limits import MAX_ITEMS

MAX_LIST_SIZE = MAX_ITEMS
"""Assumed size of every list fact and dyn collection: the extractor reads at most
`MAX_ITEMS` strings and keys per call, and the facts come from them (a dyn list of numbers can
be longer; the run-time budget, `runtime.EVAL_BUDGET_S`, bounds what the estimate misses)."""

COST_LIMIT = 10_000_000
"""Largest `estimate_cost` a `when` may have (see `estimate_cost` for the units): a few scans
of the largest list pass, a comprehension over a list nested in another, or `in` on a list
inside one (quadratic in `MAX_LIST_SIZE`), does not."""

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


def estimate_cost(tree: Parsed, env: CelEnv, *, checked: bool = False) -> int:
    """Worst-case static cost, Kubernetes style, in *steps*.

    A step is one constant-time operation of a lowered closure (a literal, a field read, a
    comparison, a boolean operator), about 30-60 ns here. Function calls cost what
    `_FUNCTION_COST` says (glob-set matchers 5-10 steps, `matches` 50: RE2 scans the string).
    `&&`/`||` count both sides, `?:` its dearer branch. A comprehension costs its range plus
    `size(range) * (body + 1)`; every list fact and dyn collection is assumed to hold
    `MAX_LIST_SIZE` elements (the extractor's limit), list literals hold what they show. `==`
    on lists and `in` over a list cost the list's size, `+` of lists both sizes, so they
    multiply inside a comprehension. Compare with `COST_LIMIT`. `checked`: as in `lower`.
    """
    n = tree.root
    if not checked:
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
        if op == "+" and _is_list(n.t):  # a new list: both are copied
            return total + kids[0][1] + kids[1][1] + 1, kids[0][1] + kids[1][1]
        return total + 1, MAX_LIST_SIZE
    if k in ("call", "method"):
        return total + _FUNCTION_COST.get(n.a, 5), MAX_LIST_SIZE
    if k == "has":
        return total + 1, 0
    return total + 1, kids[0][1] if kids else MAX_LIST_SIZE
