"""`policy explain`: every rule considered for one call, evaluated without short-circuit.

Uses only the compiled table (closures and clause closures), never the policy source.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.tree import Tree

from mcp_defense.policy.facts import ExtractionError, ToolCall
from mcp_defense.policy.table import (
    CompiledRule,
    DecisionTable,
    EvalCtx,
    Explanation,
    RuleTrace,
)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


def _clauses(rule: CompiledRule, ctx: EvalCtx) -> tuple[tuple[str, str], ...]:
    out = []
    for text, fn in rule.clauses():
        try:
            out.append((text, _value(fn(ctx))))
        except Exception as e:  # noqa: BLE001 - shown to the author, not acted on
            out.append((text, f"error: {e}"))
    return out if len(out) > 1 else ()  # type: ignore[return-value]


def explain(table: DecisionTable, call: ToolCall) -> Explanation:
    decision = table.decide(call)
    arch = table.rules_for(call.archetype)
    if arch is None:
        return Explanation(call, None, decision, (), error=decision.reason)
    try:
        facts = table.facts(call.tool, call.arguments, call.annotations)
    except ExtractionError as e:
        return Explanation(call, None, decision, (), error=str(e))
    ctx = EvalCtx(facts, None, call.agent_id, call.session_id, arch.const, table.variables)
    considered = arch.for_tool(facts.tool, True)
    considered_names = {r.name for r in considered}
    every = arch.every()
    traces: list[RuleTrace] = []
    deciding_clause = ""
    for r in every:
        base: dict[str, Any] = dict(
            name=r.name,
            kind=r.kind,
            action=r.action.value,
            priority=r.priority,
            source=r.source,
            when=r.when,
        )
        if r.name not in considered_names:
            traces.append(
                RuleTrace(
                    **base, status="not indexed", detail=f"only for tools {', '.join(r.tools)}"
                )
            )
            continue
        ctx.witness = {}
        try:
            hit = r.fn(ctx)
        except Exception as e:  # noqa: BLE001
            traces.append(RuleTrace(**base, status="error", detail=str(e)))
            continue
        clauses = _clauses(r, ctx)
        status = "matched" if hit is True else "not matched"
        detail = ""
        if hit is True and ctx.witness:
            detail = ", ".join(f"{k} = {v!r}" for k, v in ctx.witness.items() if "." not in k)
        if hit is True and r.name == decision.rule:
            status = "decided"
            true_clauses = [c for c, v in clauses if v == "true"]
            deciding_clause = true_clauses[0] if len(clauses) and len(true_clauses) == 1 else r.when
            if clauses and all(v == "true" for _, v in clauses):
                deciding_clause = r.when
        traces.append(RuleTrace(**base, status=status, detail=detail, clauses=clauses))
    for name in arch.dropped:
        traces.append(
            RuleTrace(
                name=name,
                kind="rule",
                action="",
                priority=0,
                source="",
                when="",
                status="folded",
                detail=f"cannot fire for archetype {call.archetype}",
            )
        )
    return Explanation(call, facts, decision, tuple(traces), deciding_clause)


_STYLE = {
    "allow": "green",
    "alert": "yellow",
    "require_approval": "magenta",
    "deny": "red",
    "kill": "bold red",
}


def render_explanation(exp: Any, console: Console) -> None:
    """The `policy explain` tree (also printed under changed decisions by `policy test`)."""
    d = exp.decision
    style = _STYLE.get(d.action.value, "white")
    root = Tree(
        f"[bold]{exp.call.tool}[/] on [cyan]{exp.call.archetype}[/] → "
        f"[{style}]{d.action.value}[/] [dim]{d.rule or '(default)'}[/]  {d.reason}"
    )
    if exp.error:
        root.add(f"[red]not evaluated:[/] {exp.error}")
    if exp.facts is not None:
        f = exp.facts
        facts = root.add("[bold]facts[/]")
        for name in ("paths", "urls", "hosts", "endpoints", "programs", "commands"):
            values = getattr(f, name)
            if values:
                facts.add(f"call.{name} = {list(values)!r}")
        if f.written and f.written != f.paths:
            facts.add(f"call.written = {list(f.written)!r}")
        effects = [n for n in ("reads", "writes", "spawns", "network") if getattr(f, n)]
        facts.add(f"effects: {', '.join(effects) or 'none'}")
    rules = root.add("[bold]rules[/] (in decision order)")
    for r in exp.rules:
        mark = {
            "decided": "[bold]★ decided[/]",
            "matched": "[yellow]matched[/]",
            "not matched": "[dim]no[/]",
            "error": "[red]error[/]",
            "folded": "[dim]folded[/]",
            "not indexed": "[dim]skipped[/]",
        }.get(r.status, r.status)
        node = rules.add(
            f"{mark} [bold]{r.name}[/] [dim]p{r.priority} {r.action} {r.source}[/]"
            + (f"  {r.detail}" if r.detail else "")
        )
        for clause, value in r.clauses:
            node.add(f"[dim]{value:>5}[/]  {clause}")
    if exp.deciding_clause:
        root.add(f"[bold]deciding clause:[/] {exp.deciding_clause}")
    console.print(root)
