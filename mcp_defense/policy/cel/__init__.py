"""CEL `when` expressions: parse, type-check, cost-estimate and lower to plain Python closures.

Nothing on the decision path interprets CEL source. At compile time a `when` is parsed with
cel-python's grammar (`syntax`), checked against `schema`, the one declaration of what CEL sees
(`check`, over the types of `types`), costed (`cost`) and lowered to a closure `fn(ctx)` over
plain values (`lower`), which calls the helpers of `runtime` only. The semantics are the CEL
specification's; the tests compare the closures with Google's cel-cpp. The forms this
implementation rejects, and where cel-python differs, are listed in docs/language.md.
"""

from mcp_defense.policy.cel.check import (
    CelUnavailable,
    CelWarning,
    archetype_fields,
    check,
    unguarded,
)
from mcp_defense.policy.cel.cost import COST_LIMIT, MAX_LIST_SIZE, estimate_cost
from mcp_defense.policy.cel.lower import Lowered, lower
from mcp_defense.policy.cel.runtime import EVAL_BUDGET_S, CelBudgetExceeded, CelEvalError
from mcp_defense.policy.cel.syntax import (
    MAX_NESTING,
    MAX_SOURCE_LENGTH,
    CelError,
    clauses,
    conjuncts,
    parse,
)
from mcp_defense.policy.cel.types import CelEnv

__all__ = [
    "COST_LIMIT",
    "EVAL_BUDGET_S",
    "MAX_LIST_SIZE",
    "MAX_NESTING",
    "MAX_SOURCE_LENGTH",
    "CelBudgetExceeded",
    "CelEnv",
    "CelError",
    "CelEvalError",
    "CelUnavailable",
    "CelWarning",
    "Lowered",
    "archetype_fields",
    "check",
    "clauses",
    "conjuncts",
    "estimate_cost",
    "lower",
    "parse",
    "unguarded",
]
