"""AST → DecisionTable: the checks of `policy/check.py`, then the stages that build the table.

`PIPELINE` is the compiler as an ordered list of (name, stage), the way OPA's compiler lists
its stages; `compile_files` runs it in order and times each stage (`policy compile
--timings`). The checks (`check.CHECKS`, all `policy lint` runs) come first: they fold every
rule once per archetype (partial evaluation, each archetype is a constant) and drop the rules
that fold to `false`. The stages after them run only on a policy without errors: they turn
the folded rules into each archetype's rule lists, with `call.tool == "x"` conjuncts as a dict
index from tool name to the rules that can fire for it, and build the table.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mcp_defense.policy import ast, cel
from mcp_defense.policy.check import (
    CHECKS,
    Compilation,
    Stage,
    builtin_variables,
    run_stages,
    version_of,
)
from mcp_defense.policy.diagnostics import Diagnostic, PolicyError
from mcp_defense.policy.facts import Action
from mcp_defense.policy.table import (
    FACT_BITS,
    ArchetypeRules,
    CompiledRule,
    DecisionTable,
    ReasonTemplate,
)

__all__ = ["PIPELINE", "STAGES", "builtin_variables", "compile_files", "version_of"]

_TOOL_EQ = re.compile(r'^\s*\(?\s*call\.tool\s*==\s*"((?:[^"\\]|\\.)*)"\s*\)?\s*$')
_TOOL_IN = re.compile(r"^\s*\(?\s*call\.tool\s+in\s+\[([^\]]*)\]\s*\)?\s*$")


def _tool_index(conjuncts: list[str]) -> tuple[str, ...]:
    # Conjuncts only: `call.tool == "a" || call.tool == "b"` must not be indexed under "a".
    for text in conjuncts:
        m = _TOOL_EQ.match(text)
        if m:
            return (json.loads(f'"{m.group(1)}"'),)
        m = _TOOL_IN.match(text)
        if m:
            items = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
            rest = re.sub(r'"((?:[^"\\]|\\.)*)"', "", m.group(1)).replace(",", "").strip()
            if items and not rest:
                return tuple(json.loads(f'"{i}"') for i in items)
    return ()


_DEFINITION_CLAUSE = re.compile(
    r'^\(?\s*call\.(?:tool_status\s*(?:==\s*"[^"]+"|in\s*\[\s*"[^"]+"(?:\s*,\s*"[^"]+")*\s*\])'
    r'|description\s*!=\s*"")\s*\)?$'
)


def _needs_definition(conjuncts: list[str]) -> bool:
    """Whether a clause of the rule's top-level conjunction is false for a call that carries
    no tool definition (`call.tool_status` is "" and `call.description` is "" then)."""
    return any(_DEFINITION_CLAUSE.match(" ".join(text.split())) for text in conjuncts)


def _needed_effects(conjuncts: list[str]) -> int:
    """FACT_BITS of the top-level conjuncts that are a bare effect fact (`call.writes`)."""
    bits = 0
    for text in conjuncts:
        bits |= FACT_BITS.get("".join(text.split()).strip("()"), 0)
    return bits


def _lazy_clauses(
    tree: Any, env_cel: cel.CelEnv, constants: dict[str, Any]
) -> Callable[[], tuple[tuple[str, Callable[[Any], Any]], ...]]:
    """The per-clause closures `policy explain` shows, lowered on first use only: half the
    compile (and so half of every hot reload) would otherwise go to them."""
    done: list[tuple[tuple[str, Callable[[Any], Any]], ...]] = []

    def get() -> tuple[tuple[str, Callable[[Any], Any]], ...]:
        if not done:
            out = []
            for text, sub in cel.clauses(tree):
                try:
                    low = cel.lower(sub, env_cel, constants)
                except (cel.CelError, cel.CelEvalError):
                    continue
                out.append((" ".join(text.split()), low.fn))
            done.append(tuple(out))
        return done[0]

    return get


def _fingerprint(r: ast.Rule) -> str:
    text = "\x1f".join(
        [
            r.kind,
            r.name,
            " ".join(r.when.split()),
            r.action,
            r.reason.value if r.reason else "",
            str(r.priority),
            ",".join(r.scope),
            str(r.learn),
            *(["listed"] if r.listed else []),  # absent by default: fingerprints stay stable
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _default_reason(r: ast.Rule) -> str:
    return {
        "allow": "allowed by rule {rule}",
        "deny": "denied by rule {rule}",
        "require_approval": "approval required by rule {rule}",
        "alert": "alert raised by rule {rule}",
        "kill": "killed by rule {rule}",
        "redact": "secrets redacted by rule {rule}",
    }[r.action]


# ---------------------------------------------------------------------------------------------
# The stages that build the table


class _Build(Compilation):
    """A compilation that also builds the table: the state of the stages after the checks."""

    per_arch: dict[str, ArchetypeRules]
    tool_rules: dict[str, int]  # archetype → tool-call rules that can fire there
    table: DecisionTable | None


def stage_rule_lists(c: Compilation) -> None:
    """Each archetype's rules that survived folding, as the lists the table decides with:
    tool-call rules by priority (generic, and per tool name for `call.tool == "x"` rules),
    flow rules, orphan rules, response rules."""
    assert isinstance(c, _Build)
    tools: dict[str, tuple[str, ...]] = {}
    needs_def: dict[str, bool] = {}
    needs: dict[str, int] = {}
    for p in c.parsed:
        conj = [text for text, _ in cel.conjuncts(p.tree)] if p.node.kind == "rule" else []
        tools[p.node.name] = _tool_index(conj)
        needs_def[p.node.name] = _needs_definition(conj)
        needs[p.node.name] = _needed_effects(conj)
    c.per_arch, c.tool_rules = {}, {}
    # Archetypes that share a rule's lowering (check.stage_fold) share its CompiledRule too:
    # the rule's clauses for `policy explain` fold the same there (they read a subset of the
    # same archetype fields). Most rules never name `archetype`: one object for all archetypes.
    # (Keyed by the lowering's id: c.kept holds every lowering for the length of this stage.)
    made: dict[tuple[str, int], CompiledRule] = {}
    for name, const in c.consts.items():
        generic: list[CompiledRule] = []
        indexed: list[CompiledRule] = []
        flows: list[CompiledRule] = []
        orphans: list[CompiledRule] = []
        responses: list[CompiledRule] = []
        constants = c.constants(name)
        for k in c.kept[name]:
            r, p = k.rule.node, k.rule
            key = (r.name, id(k.lowered))  # (a constant `true` may be one shared object)
            cr = made.get(key)
            if cr is None:
                cr = made[key] = CompiledRule(
                    r.name,
                    r.kind,
                    Action(r.action),
                    r.priority,
                    p.order,
                    k.lowered.fn,
                    ReasonTemplate.parse(r.reason.value if r.reason else _default_reason(r)),
                    str(r.span),
                    r.learn,
                    r.when.strip(),
                    tools[r.name],
                    _lazy_clauses(p.tree, p.env, constants),
                    needs_def[r.name],
                    needs[r.name],
                )
            if r.kind == "flow":
                flows.append(cr)
            elif r.kind == "orphan":
                orphans.append(cr)
            elif r.kind == "response":
                responses.append(cr)
            elif cr.tools:
                indexed.append(cr)
            else:
                generic.append(cr)
        generic.sort(key=lambda x: x.sort_key)
        per_tool: dict[str, list[CompiledRule]] = {}
        for cr in indexed:
            for t in dict.fromkeys(cr.tools):
                per_tool.setdefault(t, []).append(cr)
        c.per_arch[name] = ArchetypeRules(
            const,
            tuple(generic),
            {t: tuple(sorted(rs, key=lambda x: x.sort_key)) for t, rs in per_tool.items()},
            tuple(sorted(flows, key=lambda x: x.sort_key)),
            tuple(sorted(orphans, key=lambda x: x.sort_key)),
            tuple(c.dropped[name]),
            tuple(sorted(responses, key=lambda x: x.sort_key)),
        )
        c.tool_rules[name] = len(generic) + len(indexed)


def stage_table(c: Compilation) -> None:
    """The immutable DecisionTable, with the summary `policy compile` prints."""
    assert isinstance(c, _Build)
    assert c.classifier is not None and c.env is not None
    summary = {
        "archetypes": {
            n: {
                "rules": c.tool_rules[n],
                "indexed_tools": sorted(a.indexed),
                "flow_rules": len(a.flow),
                "orphan_rules": len(a.orphan),
                "dropped": list(a.dropped),
            }
            for n, a in c.per_arch.items()
        },
        "rules": len(c.parsed),
        "jewel_globs": sum(len(lv.globs) for j in c.all_jewels for lv in j.levels),
        "classify": {
            "tools": len(c.classifier.tool_exact) + len(c.classifier.tool_globs),
            "keys": len(c.classifier.key_roles),
        },
        "tests": len(c.tests),
        "default": c.default[0].value,
        "join": {"keys": list(c.join.keys), "window_s": c.join.window_s},
    }
    from mcp_defense.policy.explain import explain as explainer

    c.table = DecisionTable(
        version=version_of(c.files, c.variables),
        files=[f.path for f in c.files],
        variables=c.variables,
        archetypes=c.per_arch,
        classifier=c.classifier,
        env=c.env,
        default=c.default,
        join=c.join,
        tests=c.tests,
        rule_fingerprints={p.node.name: _fingerprint(p.node) for p in c.parsed},
        explainer=explainer,
        summary=summary,
        jewels=c.jewel,
        listed=frozenset(p.node.name for p in c.parsed if p.node.listed),
    )


BUILD: tuple[tuple[str, Stage], ...] = (
    ("archetypes: rule lists, tool index", stage_rule_lists),
    ("table", stage_table),
)

PIPELINE: tuple[tuple[str, Stage], ...] = (*CHECKS, *BUILD)
"""The compiler's stages, in order; the ones after the checks run only without errors."""

STAGES = tuple(name for name, _ in PIPELINE)
"""The stage names, in order: `policy compile --timings` reports the time of each."""


def compile_files(
    files: Sequence[ast.PolicyFile],
    overrides: Mapping[str, str] | None = None,
    *,
    strict: bool = True,
) -> tuple[DecisionTable | None, list[Diagnostic]]:
    """Compile parsed files (imports already resolved, in load order).

    Returns the table (None when there are errors) and every diagnostic, warnings included.
    """
    c = _Build(files, dict(overrides or {}))
    c.table = None
    run_stages(c, CHECKS)
    c.diags.sort(key=lambda d: (d.span.file, d.span.line, d.span.column))
    if c.errors:
        if strict:
            raise PolicyError(c.diags)
        return None, c.diags
    run_stages(c, BUILD)
    assert c.table is not None
    c.table.timings = tuple(c.timings)
    return c.table, c.diags
