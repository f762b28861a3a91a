"""AST of .mcpd files. Every node carries a Span so every diagnostic can point at file:line:col."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Span:
    file: str
    line: int
    column: int
    end_line: int = 0
    end_column: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Str:
    """A string literal as written (unquoted, escapes resolved, `${vars}` not yet expanded)."""

    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Import:
    path: Str
    span: Span


@dataclass(frozen=True, slots=True)
class Let:
    name: str
    value: Str
    span: Span


@dataclass(frozen=True, slots=True)
class Default:
    action: str
    reason: Str | None
    span: Span


@dataclass(frozen=True, slots=True)
class Targets:
    """`any`, `none`, or a list of patterns; `kind` is 'any' | 'none' | 'list'."""

    kind: str
    items: tuple[Str, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Archetype:
    name: str
    span: Span
    description: str = ""
    paths: Targets | None = None
    writes: Targets | None = None
    network: Targets | None = None
    spawn: Targets | None = None
    learn_s: float | None = None
    runtime: Targets | None = None  # paths the server process needs to run (--sandbox only)
    env: EnvDecl | None = None  # the variables a stdio server inherits (None: the default)


@dataclass(frozen=True, slots=True)
class EnvDecl:
    """`env any`, `env none`, or names/globs (`default` among them: the variables whose
    names do not say they are credentials); `kind` is 'any' | 'none' | 'list'."""

    kind: str
    names: tuple[Str, ...]
    default: bool
    span: Span


@dataclass(frozen=True, slots=True)
class JewelLevel:
    level: str
    globs: tuple[Str, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Jewels:
    name: str
    levels: tuple[JewelLevel, ...]
    span: Span
    description: str = ""


@dataclass(frozen=True, slots=True)
class ClassifyTool:
    patterns: tuple[Str, ...]
    effects: tuple[str, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ClassifyKey:
    keys: tuple[Str, ...]
    role: str | None
    effects: tuple[str, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Classify:
    tools: tuple[ClassifyTool, ...]
    keys: tuple[ClassifyKey, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Rule:
    """`rule`, `flow rule`, `orphan rule` or `response rule` (kind 'rule' | 'flow' | 'orphan'
    | 'response')."""

    kind: str
    name: str
    span: Span
    when: str  # CEL source
    when_span: Span  # where the CEL text starts
    action: str  # allow | deny | approve | alert | kill
    action_span: Span
    reason: Str | None = None
    priority: int = 0
    scope: tuple[str, ...] = ()  # archetype names; empty = every archetype
    scope_span: Span | None = None
    learn: bool = False
    description: str = ""
    # A tool this rule refuses whatever the arguments stays in `tools/list` (the default hides
    # it from the agent).
    listed: bool = False
    listed_span: Span | None = None


@dataclass(frozen=True, slots=True)
class JoinKey:
    flow_field: str
    call_field: str
    span: Span


@dataclass(frozen=True, slots=True)
class Correlate:
    keys: tuple[JoinKey, ...]
    window_s: float | None
    span: Span


@dataclass(frozen=True, slots=True)
class Test:
    name: str
    span: Span
    archetype: str | None = None
    archetype_span: Span | None = None
    agent: str = ""
    tool: str | None = None
    arguments: Any = field(default_factory=dict)  # JSON with Str leaves (for ${var} expansion)
    expect: str | None = None
    expect_rule: str | None = None
    expect_span: Span | None = None


@dataclass(frozen=True, slots=True)
class PolicyFile:
    path: str
    source: str
    imports: tuple[Import, ...] = ()
    lets: tuple[Let, ...] = ()
    defaults: tuple[Default, ...] = ()
    archetypes: tuple[Archetype, ...] = ()
    jewels: tuple[Jewels, ...] = ()
    classify: tuple[Classify, ...] = ()
    rules: tuple[Rule, ...] = ()
    correlate: tuple[Correlate, ...] = ()
    tests: tuple[Test, ...] = ()
