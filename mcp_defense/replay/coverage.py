"""Rule coverage for `policy test --coverage`: which rules decided how many cases, and which
never did, each by file:line (`opa test --coverage` prints only a percentage, which tells an
author nothing about *what* to test next).

Only tool-call rules count toward the percentage: `policy test` decides tool calls, so flow
and orphan rules cannot fire here and are listed apart rather than dragging the figure down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp_defense.policy.table import DecisionTable
from mcp_defense.replay.runner import rule_sources, split_source

# Rules the engine itself decides with (table.py); counted, never part of the percentage.
ENGINE_RULES = ("unknown_archetype", "malformed_arguments", "rule_error", "internal_error")


@dataclass(frozen=True, slots=True)
class RuleHits:
    name: str
    kind: str  # rule | flow | orphan | folded
    source: str  # file:line:col ("" when folded away for every archetype)
    hits: int

    @property
    def location(self) -> str:
        file, line, _ = split_source(self.source)
        return f"{file}:{line}" if line else (self.source or "(folded away everywhere)")


@dataclass
class Coverage:
    rules: list[RuleHits]  # tool-call rules, the percentage's denominator
    other: list[RuleHits]  # flow / orphan rules: not decidable by tool-call tests
    engine: dict[str, int] = field(default_factory=dict)  # "(default)" and engine rule hits

    @property
    def covered(self) -> int:
        return sum(1 for r in self.rules if r.hits)

    @property
    def total(self) -> int:
        return len(self.rules)

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / self.total if self.total else 100.0

    @property
    def never_fired(self) -> list[RuleHits]:
        return [r for r in self.rules if not r.hits]

    def per_file(self) -> list[tuple[str, int, int]]:
        """(file, covered, total) for each policy file with tool-call rules, like opa's report."""
        acc: dict[str, list[int]] = {}
        for r in self.rules:
            file = split_source(r.source)[0] if r.source else "(folded)"
            c = acc.setdefault(file, [0, 0])
            c[1] += 1
            c[0] += 1 if r.hits else 0
        return [(f, c[0], c[1]) for f, c in sorted(acc.items())]

    def to_dict(self) -> dict[str, Any]:
        def one(r: RuleHits) -> dict[str, Any]:
            file, line, col = split_source(r.source)
            return {
                "rule": r.name,
                "kind": r.kind,
                "file": file,
                "line": line,
                "column": col,
                "hits": r.hits,
            }

        return {
            "percent": round(self.percent, 2),
            "covered": self.covered,
            "total": self.total,
            "rules": [one(r) for r in self.rules],
            "never_fired": [one(r) for r in self.never_fired],
            "not_counted": [one(r) for r in self.other],
            "engine": dict(self.engine),
            "files": [{"file": f, "covered": c, "total": t} for f, c, t in self.per_file()],
        }


def compute(table: DecisionTable, hits: Mapping[str, int]) -> Coverage:
    sources = rule_sources(table)
    rules: list[RuleHits] = []
    other: list[RuleHits] = []
    for name, (kind, source) in sources.items():
        rh = RuleHits(name, kind, source, hits.get(name, 0))
        (rules if kind == "rule" else other).append(rh)
    # A rule partial evaluation folded to `false` for every archetype can never fire: that is
    # exactly what coverage should point at, so it counts (as never fired, with no source).
    for name in sorted(set(table.rule_fingerprints) - set(sources)):
        rules.append(RuleHits(name, "folded", "", hits.get(name, 0)))

    def order(r: RuleHits) -> tuple[str, int, int, str]:
        file, line, col = split_source(r.source)
        return (file if r.source else "\uffff", line, col, r.name)

    rules.sort(key=order)
    other.sort(key=order)
    engine = {
        ("(default)" if k == "" else k): v
        for k, v in sorted(hits.items())
        if k == "" or k in ENGINE_RULES
    }
    return Coverage(rules, other, engine)
