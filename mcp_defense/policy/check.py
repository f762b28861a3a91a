"""The checks of the policy compiler: every stage whose findings `policy lint` reports.

`CHECKS` is an ordered list of (name, stage); each stage reads and extends one `Compilation`
and reports diagnostics into it. `check_files` runs them and nothing else, which is what
`policy lint` needs; `compile.compile_files` runs them and then its own stages, which build
the decision table (`compile.PIPELINE`).

The checks fold every rule once per archetype (partial evaluation: `archetype` and `vars` are
constants), because that is how the compiler knows a rule can never fire or always fails; the
compile stages reuse what they folded.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import posixpath
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from mcp_defense.policy import ast, cel
from mcp_defense.policy.diagnostics import ERROR, WARNING, Diagnostic
from mcp_defense.policy.extract import Classifier, Environment
from mcp_defense.policy.extract import urls as netfacts
from mcp_defense.policy.facts import Action, JoinSpec
from mcp_defense.policy.glob_intersect import JewelPatterns, is_pattern
from mcp_defense.policy.globs import GlobError, GlobSet, glob_to_regex
from mcp_defense.policy.limits import MAX_EXPANSION_CHARS, MAX_STRING_CHARS, size
from mcp_defense.policy.schema import RULE_SCOPES
from mcp_defense.policy.table import (
    ArchetypeConst,
    EnvSpec,
    InlineTest,
    NetEntry,
    ReasonTemplate,
    split_endpoint,
)

JEWEL_LEVELS = ("crown", "auth", "config")  # most sensitive first
RULE_ACTIONS = {
    "rule": {"allow", "deny", "require_approval", "alert", "kill"},
    "flow": {"allow", "alert", "kill"},
    "orphan": {"allow", "alert", "kill"},
    "response": {"allow", "alert", "redact", "deny"},
}
JOIN_KEYS = {
    ("flow.cgroup_id", "call.cgroup_id"): "cgroup_id",
    ("flow.pid", "call.server_pid"): "pid",
}
ENGINE_RULES = ("malformed_arguments", "unknown_archetype", "rule_error", "internal_error")
"""Rule names the engine itself decides with (an inline test may expect them)."""
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ARCHETYPE_WORD = re.compile(r"\barchetype\b")


def builtin_variables() -> dict[str, str]:
    """Variables every policy has; `--set` overrides them."""
    return {"workspace": os.getcwd(), "home": os.path.expanduser("~")}


def version_of(files: Sequence[ast.PolicyFile], variables: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        h.update(os.path.basename(f.path).encode() + b"\0" + f.source.encode() + b"\0")
    for k in sorted(variables):
        h.update(f"{k}={variables[k]}\0".encode())
    return h.hexdigest()[:12]


@dataclass
class ParsedRule:
    """A rule whose `when` parsed, type-checked and fits the cost limit."""

    node: ast.Rule
    order: int
    tree: Any
    env: cel.CelEnv


@dataclass
class Folded:
    """A rule lowered for one archetype that can fire there (it did not fold to false)."""

    rule: ParsedRule
    lowered: cel.Lowered


def _no_jewel(path: str) -> str:
    return ""


@dataclass
class Compilation:
    """What the stages know so far: each stage reads what the earlier ones left here."""

    files: Sequence[ast.PolicyFile]
    overrides: Mapping[str, str]
    diags: list[Diagnostic] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)  # (stage, ms), in order
    expanded: int = 0  # characters `${…}` expansion added so far (MAX_EXPANSION_CHARS)
    variables: dict[str, str] = field(default_factory=dict)
    arch_nodes: dict[str, ast.Archetype] = field(default_factory=dict)
    consts: dict[str, ArchetypeConst] = field(default_factory=dict)
    all_jewels: list[ast.Jewels] = field(default_factory=list)
    jewel: Callable[[str], str] = _no_jewel
    jewel_set: Callable[[str], str] = _no_jewel
    classifier: Classifier | None = None
    env: Environment | None = None
    default: tuple[Action, str, str] = (
        Action.DENY,
        "no rule matched and the policy declares no default (fail closed)",
        "",
    )
    names: dict[str, ast.Rule] = field(default_factory=dict)
    parsed: list[ParsedRule] = field(default_factory=list)
    kept: dict[str, list[Folded]] = field(default_factory=dict)  # archetype → rules that can fire
    dropped: dict[str, list[str]] = field(default_factory=dict)  # archetype → folded to false
    join: JoinSpec = field(default_factory=JoinSpec)
    tests: list[InlineTest] = field(default_factory=list)
    _lines: dict[str, list[str]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diags if d.is_error]

    def line(self, span: ast.Span) -> str:
        lines = self._lines.get(span.file)
        if lines is None:
            lines = next((f.source.splitlines() for f in self.files if f.path == span.file), [])
            self._lines[span.file] = lines
        return lines[span.line - 1] if 0 < span.line <= len(lines) else ""

    def error(self, span: ast.Span, code: str, msg: str) -> None:
        self.diags.append(Diagnostic(span, ERROR, code, msg, self.line(span)))

    def warn(self, span: ast.Span, code: str, msg: str) -> None:
        self.diags.append(Diagnostic(span, WARNING, code, msg, self.line(span)))

    def constants(self, archetype: str) -> dict[str, Any]:
        """The compile-time constants a rule is folded with for `archetype`."""
        return {"archetype": self.consts[archetype], "vars": dict(self.variables)}


Stage = Callable[[Compilation], None]


def run_stages(c: Compilation, stages: Sequence[tuple[str, Stage]]) -> None:
    """Run `stages` in order on `c`, recording how long each took."""
    for name, stage in stages:
        t0 = time.perf_counter()
        stage(c)
        c.timings.append((name, (time.perf_counter() - t0) * 1e3))


# ---------------------------------------------------------------------------------------------
# Variables


def _expand(s: ast.Str, variables: Mapping[str, str], c: Compilation) -> str:
    if "${" not in s.value:
        return s.value
    # The length first, so a string that would pass the limits is never built.
    grown = sum(
        len(variables[m.group(1)]) - len(m.group(0))
        for m in _VAR_RE.finditer(s.value)
        if m.group(1) in variables
    )
    if len(s.value) + grown > MAX_STRING_CHARS:
        c.error(
            s.span,
            "too-large",
            f"the string expands to {len(s.value) + grown:,} characters: the limit is "
            f"{MAX_STRING_CHARS:,} characters per string",
        )
        return ""
    if grown > 0 and c.expanded + grown > MAX_EXPANSION_CHARS:
        if c.expanded <= MAX_EXPANSION_CHARS:  # reported once
            c.error(
                s.span,
                "too-large",
                f"${{…}} expansion adds more than {size(MAX_EXPANSION_CHARS)} of text to "
                f"the policy (the limit for all its strings together)",
            )
        c.expanded = MAX_EXPANSION_CHARS + 1
        return ""
    c.expanded += max(grown, 0)

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in variables:
            col = s.span.column + 1 + m.start()
            c.error(
                ast.Span(s.span.file, s.span.line, col),
                "undefined-variable",
                f'undefined variable ${{{name}}} (define it with `let {name} = "…"` '
                f"or --set {name}=…)",
            )
            return m.group(0)
        return variables[name]

    return _VAR_RE.sub(sub, s.value)


def expand_json(value: Any, variables: Mapping[str, str], c: Compilation) -> Any:
    if isinstance(value, ast.Str):
        return _expand(value, variables, c)
    if isinstance(value, dict):
        return {k: expand_json(v, variables, c) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_json(v, variables, c) for v in value]
    return value


def _path_glob(raw: str) -> str:
    """Variables are absolute paths; normalise `//` and `/./` that joining them may create."""
    if raw.startswith("~") or raw.startswith("**"):
        return raw
    if raw.startswith("/"):
        tail = raw.endswith("/**")
        norm = posixpath.normpath(raw[:-3] if tail else raw)
        norm = "/" + norm.lstrip("/")
        return (norm.rstrip("/") + "/**") if tail else norm
    return raw


def stage_variables(c: Compilation) -> None:
    """Built-ins < `let` defaults < --set."""
    variables = builtin_variables()
    lets: dict[str, ast.Let] = {}
    for f in c.files:
        for let in f.lets:
            if let.name in lets and lets[let.name].value.value != let.value.value:
                c.error(
                    let.span,
                    "duplicate-variable",
                    f"variable {let.name!r} already defined at {lets[let.name].span}",
                )
            lets[let.name] = let
    for name, let in lets.items():
        if name not in c.overrides:
            variables[name] = _expand(let.value, {**variables, **c.overrides}, c)
    variables.update(c.overrides)
    for k in ("workspace", "home"):
        if variables.get(k):
            variables[k] = posixpath.normpath(os.path.abspath(os.path.expanduser(variables[k])))
    c.variables = variables


# ---------------------------------------------------------------------------------------------
# Archetypes, jewels, classification


def _globset(
    targets: ast.Targets | None, variables: Mapping[str, str], c: Compilation, default_any: bool
) -> GlobSet | None:
    """None means "any"; an empty GlobSet means "none"."""
    if targets is None:
        return None if default_any else GlobSet(())
    if targets.kind == "any":
        return None
    if targets.kind == "none":
        return GlobSet(())
    globs = []
    for s in targets.items:
        text = _expand(s, variables, c)
        # A variable may hold a list ("a/**, b/**"); a literal glob is one glob, blanks and
        # all (`~/.config/google-chrome/**/Login Data`).
        pieces = re.split(r"[,\s]+", text) if "${" in s.value else [text]
        for piece in [p for p in pieces if p]:
            g = _path_glob(piece)
            try:
                glob_to_regex(g)
            except GlobError as e:
                c.error(s.span, "bad-glob", str(e))
                continue
            globs.append(g)
    return _compiled_globset(globs, targets.span, c)


def _compiled_globset(
    globs: Sequence[str], span: ast.Span, c: Compilation, *, icase: bool = False
) -> GlobSet:
    """A GlobSet; a set RE2 cannot hold (too large) is a `bad-glob` error, not a traceback."""
    try:
        return GlobSet(globs, ignore_case=icase)
    except GlobError as e:
        c.error(span, "bad-glob", str(e))
        return GlobSet(())


def _net_entries(
    targets: ast.Targets, variables: Mapping[str, str], c: Compilation
) -> tuple[NetEntry, ...]:
    entries = []
    for s in targets.items:
        text = _expand(s, variables, c)
        for piece in [p for p in re.split(r"[,\s]+", text) if p]:
            entry = _net_entry(piece)
            if isinstance(entry, str):
                c.error(s.span, "bad-network", f"{piece!r}: {entry}")
            else:
                entries.append(entry)
    return tuple(entries)


def _net_entry(piece: str) -> NetEntry | str:
    host_part = piece
    port: int | None = None
    if piece.startswith("["):
        host, port = split_endpoint(piece)
        host_part = host
    elif "/" in piece and piece.count(":") == 1:  # CIDR with port: 10.0.0.0/8:5432
        host_part, port_s = piece.rsplit(":", 1)
        if port_s != "*":
            if not port_s.isdigit():
                return "port must be a number or *"
            port = int(port_s)
    elif piece.count(":") == 1:
        host_part, port_s = piece.split(":", 1)
        if port_s != "*":
            if not port_s.isdigit() or not 0 < int(port_s) < 65536:
                return "port must be 1-65535 or *"
            port = int(port_s)
    host_part = host_part.lower().rstrip(".")
    if not host_part:
        return "empty host"
    network = None
    if "/" in host_part:
        try:
            network = ipaddress.ip_network(host_part, strict=False)
        except ValueError:
            return "bad CIDR"
        return NetEntry(piece, None, network, port)
    canon = netfacts.canonical_host(host_part) if "*" not in host_part else host_part
    body = "".join("[^/:]*" if ch == "*" else re.escape(ch) for ch in canon)
    return NetEntry(piece, re.compile(body, re.IGNORECASE), None, port)


def _archetype(a: ast.Archetype, variables: Mapping[str, str], c: Compilation) -> ArchetypeConst:
    net = a.network.kind if a.network is not None else "none"
    entries = _net_entries(a.network, variables, c) if a.network and net == "list" else ()
    spawn_kind = a.spawn.kind if a.spawn is not None else "none"
    spawn_programs = (
        _globset(a.spawn, variables, c, default_any=True) if spawn_kind == "list" else None
    )
    paths = _globset(a.paths, variables, c, default_any=True)
    writes = _globset(a.writes, variables, c, default_any=False) if a.writes is not None else paths
    return ArchetypeConst(
        name=a.name,
        network=net,
        spawn=spawn_kind != "none",
        learning=bool(a.learn_s),
        description=a.description,
        paths=paths,
        writes=writes,
        net_entries=entries,
        spawn_programs=spawn_programs,
        learn_s=a.learn_s,
        source=str(a.span),
        runtime=_runtime_globs(a, variables, c),
        env=_env_spec(a.env, variables, c),
    )


def _runtime_globs(
    a: ast.Archetype, variables: Mapping[str, str], c: Compilation
) -> tuple[str, ...]:
    """The `runtime` paths (--sandbox only): never "any"."""
    gs = _globset(a.runtime, variables, c, default_any=False) if a.runtime else None
    return tuple(gs.globs) if gs is not None else ()


_ENV_NAME = re.compile(r"[A-Za-z_*?][A-Za-z0-9_*?]*")


def _env_spec(decl: ast.EnvDecl | None, variables: Mapping[str, str], c: Compilation) -> EnvSpec:
    """`env`: none given is the default (every variable but credentials)."""
    if decl is None:
        return EnvSpec()
    if decl.kind != "list":
        return EnvSpec(any=decl.kind == "any", default=False)
    names: list[str] = []
    for s in decl.names:
        for piece in [p for p in re.split(r"[,\s]+", _expand(s, variables, c)) if p]:
            if _ENV_NAME.fullmatch(piece):
                names.append(piece)
            else:
                c.error(
                    s.span,
                    "bad-env",
                    f"{piece!r} is not an environment variable name (letters, digits and _, "
                    f"not starting with a digit; * and ? as globs)",
                )
    return EnvSpec(default=decl.default, names=tuple(dict.fromkeys(names)))


def _jewel_matcher(
    jewels: Sequence[ast.Jewels], variables: Mapping[str, str], c: Compilation
) -> tuple[Callable[[str], str], Callable[[str], str]]:
    per_level: dict[str, list[str]] = {lv: [] for lv in JEWEL_LEVELS}
    per_set: list[tuple[str, GlobSet]] = []
    for j in jewels:
        set_globs: list[str] = []
        for lv in j.levels:
            if lv.level not in per_level:
                c.error(
                    lv.span,
                    "unknown-level",
                    f"unknown sensitivity level {lv.level!r} (expected one of "
                    f"{', '.join(JEWEL_LEVELS)})",
                )
                continue
            gs = _globset(ast.Targets("list", lv.globs, lv.span), variables, c, default_any=False)
            if gs is not None:
                per_level[lv.level].extend(gs.globs)
                set_globs.extend(gs.globs)
        per_set.append((j.name, _compiled_globset(set_globs, j.span, c, icase=True)))
    # Case-insensitive: macOS and Windows file systems read ~/.SSH/ID_RSA as ~/.ssh/id_rsa.
    where = jewels[0].span if jewels else ast.Span("<jewels>", 1, 1)
    levels = [(lv, _compiled_globset(per_level[lv], where, c, icase=True)) for lv in JEWEL_LEVELS]
    levels = [(lv, gs) for lv, gs in levels if gs]

    most = levels[0][0] if levels else ""
    patterns = JewelPatterns(per_level[most] if most else ())

    @lru_cache(maxsize=8192)
    def jewel(path: str) -> str:
        found = ""
        for lv, gs in levels:
            if gs.matches(path):
                found = lv
                break
        if found != most and is_pattern(path) and patterns.reaches(path):
            # `~/.ss?/id*`: the server expands it where the proxy cannot look. A pattern that
            # can match a jewel of the most sensitive level is one (less sensitive levels stay
            # literal: `ls src/*` may match a `**/credentials.json` that is not there).
            return most
        return found

    @lru_cache(maxsize=4096)
    def jewel_set(path: str) -> str:
        for name, gs in per_set:
            if gs.matches(path):
                return name
        return ""

    return jewel, jewel_set


def _classifier(
    blocks: Sequence[ast.Classify], variables: Mapping[str, str], c: Compilation
) -> Classifier:
    tools: list[tuple[list[str], list[str]]] = []
    keys: list[tuple[list[str], str | None, list[str]]] = []
    for b in blocks:
        for t in b.tools:
            tools.append(([_expand(s, variables, c) for s in t.patterns], list(t.effects)))
        for k in b.keys:
            keys.append(([_expand(s, variables, c) for s in k.keys], k.role, list(k.effects)))
    return Classifier.build(tools, keys)


def stage_definitions(c: Compilation) -> None:
    """Archetypes (as constants), the jewel matchers and the tool classifier."""
    for f in c.files:
        for a in f.archetypes:
            if a.name in c.arch_nodes:
                c.error(
                    a.span,
                    "duplicate-archetype",
                    f"archetype {a.name!r} already defined at {c.arch_nodes[a.name].span}",
                )
                continue
            c.arch_nodes[a.name] = a
    c.consts = {name: _archetype(a, c.variables, c) for name, a in c.arch_nodes.items()}
    c.all_jewels = [j for f in c.files for j in f.jewels]
    c.jewel, c.jewel_set = _jewel_matcher(c.all_jewels, c.variables, c)
    c.classifier = _classifier([b for f in c.files for b in f.classify], c.variables, c)
    c.env = Environment(
        workspace=c.variables["workspace"],
        home=c.variables["home"],
        user=os.path.basename(c.variables["home"]),
    )


def stage_default(c: Compilation) -> None:
    """The decision when no rule matches (deny unless the policy says otherwise)."""
    seen: ast.Default | None = None
    for f in c.files:
        for d in f.defaults:
            if seen is not None and seen.action != d.action:
                c.error(
                    d.span,
                    "conflicting-default",
                    f"default {d.action} conflicts with default {seen.action} at {seen.span}",
                )
                continue
            if d.action not in RULE_ACTIONS["rule"] and d.action != "approve":
                c.error(d.span, "bad-action", f"default cannot be {d.action}")
                continue
            seen = d
            reason = d.reason.value if d.reason else f"no rule matched (default {d.action})"
            c.default = (Action(d.action), reason, str(d.span))


# ---------------------------------------------------------------------------------------------
# Rules


_GLOB_CACHE_MAX = 1024


def functions(
    jewel: Callable[[str], str], jewel_set: Callable[[str], str]
) -> dict[str, Callable[..., Any]]:
    """The implementations of the CEL functions of `schema.FUNCTIONS` for one policy."""
    glob_cache: dict[str, GlobSet] = {}

    def glob(path: str, pattern: str) -> bool:
        gs = glob_cache.get(pattern)
        if gs is None:
            if len(glob_cache) >= _GLOB_CACHE_MAX:  # a pattern built from call data: bounded
                glob_cache.clear()
            gs = glob_cache[pattern] = GlobSet([pattern])
        return gs.matches(path)

    return {
        "jewel": jewel,
        "jewel_set": jewel_set,
        "glob": glob,
        "basename": lambda p: posixpath.basename(p.rstrip("/")),
        "is_ip": netfacts.is_ip,
        "is_loopback": netfacts.is_loopback,
        "is_link_local": netfacts.is_link_local,
        "is_private": netfacts.is_private,
        "is_metadata": netfacts.is_metadata,
        "allows_path": lambda a, p: a.allows_path(p),
        "allows_write": lambda a, p: a.allows_write(p),
        "allows_host": lambda a, h: a.allows_host(h),
        "allows_endpoint": lambda a, e: a.allows_endpoint(e),
        "allows_program": lambda a, p: a.allows_program(p),
        "allows_flow": lambda a, f: a.allows_flow(f),
    }


def cel_span(rule: ast.Rule, err: cel.CelError) -> ast.Span:
    line = rule.when_span.line + max(err.line, 1) - 1
    col = rule.when_span.column + max(err.column, 1) - 1 if err.line <= 1 else max(err.column, 1)
    return ast.Span(rule.when_span.file, line, col)


def _cel_code(err: cel.CelError) -> str:
    return "unavailable" if isinstance(err, cel.CelUnavailable) else "cel"


def stage_rules(c: Compilation) -> None:
    """Names, actions and scopes of every rule; its `when` parsed, type-checked and costed;
    fields read without a `has()` guard; reason placeholders."""
    fns = functions(c.jewel, c.jewel_set)
    var_names = tuple(sorted(c.variables))
    envs = {kind: cel.CelEnv(scope, var_names, fns) for kind, scope in RULE_SCOPES.items()}
    order = 0
    for f in c.files:
        for r in f.rules:
            order += 1
            if r.name in c.names:
                c.error(
                    r.span,
                    "duplicate-rule",
                    f"rule {r.name!r} already defined at {c.names[r.name].span}",
                )
                continue
            c.names[r.name] = r
            if r.action not in RULE_ACTIONS[r.kind]:
                c.error(
                    r.action_span,
                    "bad-action",
                    f"{r.kind} rules cannot {r.action} (allowed: "
                    f"{', '.join(sorted(RULE_ACTIONS[r.kind]))})",
                )
                continue
            if r.listed and r.kind != "rule":
                c.error(
                    r.listed_span or r.span,
                    "bad-option",
                    f"`listed` applies to tool-call rules only (this is a {r.kind} rule): it "
                    "keeps a tool the rule refuses in tools/list",
                )
            for scoped in r.scope:
                if scoped not in c.arch_nodes:
                    c.error(
                        r.scope_span or r.span,
                        "unknown-archetype",
                        f"rule {r.name!r} is scoped to unknown archetype {scoped!r}",
                    )
            env_cel = envs[r.kind]
            try:
                tree = cel.parse(r.when)
                typ = cel.check(tree, env_cel)
                cost = cel.estimate_cost(tree, env_cel, checked=True)
            except cel.CelError as e:
                c.error(cel_span(r, e), _cel_code(e), e.message)
                continue
            if typ not in ("bool", "dyn"):
                c.error(r.when_span, "cel-type", f"`when` must be a bool, this is {typ}")
                continue
            if cost > cel.COST_LIMIT:
                c.error(
                    r.when_span,
                    "cel-cost",
                    f"estimated cost {cost} exceeds the limit {cel.COST_LIMIT}; "
                    f"narrow the comprehensions or split the rule",
                )
                continue
            for w in cel.unguarded(tree, env_cel, checked=True):
                c.warn(
                    cel_span(r, w),
                    "unguarded-field",
                    f"{w.field} may be absent in rule {r.name!r}: a call without it makes the "
                    f"rule fail (deny, rule_error); guard it with `{w.guard} && ...`",
                )
            if r.reason is not None:
                for name in ReasonTemplate.parse(r.reason.value).fields():
                    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                        c.error(r.reason.span, "bad-reason", f"bad placeholder {{{name}}}")
            c.parsed.append(ParsedRule(r, order, tree, env_cel))


def _lower(p: ParsedRule, constants: Mapping[str, Any]) -> cel.Lowered | Exception:
    try:
        return cel.lower(p.tree, p.env, constants, checked=True)
    except (cel.CelError, cel.CelEvalError) as e:
        return e


_PLAIN = (str, bool, int, float, type(None))


def _fold_key(fields: frozenset[str] | None, const: Any) -> tuple[Any, ...]:
    """What a rule's folding depends on under the archetype `const`: the values of the fields
    it reads (`archetype.spawn`), and of those its methods read (`archetype.allows_write(p)`
    reads `writes`: ArchetypeConst.METHOD_FIELDS), so archetypes that agree on them share one
    lowering. Anything else (a bare `archetype`, a method not listed) depends on the whole
    archetype: its own key."""
    if fields is None:
        return ("", id(const))
    out: list[Any] = []
    for f in sorted(fields):
        v = getattr(const, f, None)
        if callable(v):
            deps = ArchetypeConst.METHOD_FIELDS.get(f)
            if deps is None:
                return ("", id(const))
            for d in deps:
                dv = _fold_value(getattr(const, d))
                if dv is None:
                    return ("", id(const))
                out.append((d, dv))
            continue
        if not isinstance(v, _PLAIN):
            return ("", id(const))
        out.append((f, type(v), v))
    return tuple(out)


def _fold_value(v: Any) -> tuple[Any, ...] | None:
    """A field's value as a hashable key, or None when it has no faithful one."""
    if isinstance(v, _PLAIN):
        return (type(v), v)
    if isinstance(v, GlobSet):
        return ("globs", v.globs, v.ignore_case)
    if isinstance(v, tuple) and all(isinstance(e, NetEntry) for e in v):
        return ("net", tuple((e.text, e.port) for e in v))
    return None


def stage_fold(c: Compilation) -> None:
    """Partial evaluation: every rule lowered once per archetype it applies to. A rule that
    folds to false there is dropped; one that folds to an error is reported; one that folds to
    false everywhere can never fire. Archetypes that agree on every `archetype.*` field a rule
    reads share its lowering (a `when` that does not name `archetype` is lowered once)."""
    fires_somewhere: dict[str, bool] = {p.node.name: False for p in c.parsed}
    shared: dict[tuple[str, tuple[Any, ...]], cel.Lowered | Exception] = {}
    fields = {
        p.node.name: cel.archetype_fields(p.tree)
        if _ARCHETYPE_WORD.search(p.node.when)
        else frozenset()
        for p in c.parsed
    }
    for name in c.consts:
        kept: list[Folded] = []
        dropped: list[str] = []
        constants = c.constants(name)
        keys: dict[frozenset[str] | None, tuple[Any, ...]] = {}  # rules read few field sets
        for p in c.parsed:
            r = p.node
            if r.scope and name not in r.scope:
                continue
            f = fields[r.name]
            fold_key = keys.get(f)
            if fold_key is None:
                fold_key = keys[f] = _fold_key(f, c.consts[name])
            key = (r.name, fold_key)
            hit = shared.get(key)
            lowered = shared[key] = _lower(p, constants) if hit is None else hit
            if isinstance(lowered, cel.CelError):
                c.error(cel_span(r, lowered), _cel_code(lowered), lowered.message)
                continue
            if isinstance(lowered, Exception):
                c.error(r.when_span, "cel-eval", f"always fails for archetype {name!r}: {lowered}")
                continue
            if lowered.const and lowered.value is not True:
                dropped.append(r.name)
                continue
            fires_somewhere[r.name] = True
            kept.append(Folded(p, lowered))
        c.kept[name] = kept
        c.dropped[name] = dropped

    for p in c.parsed:
        if p.node.scope and not set(p.node.scope) & set(c.consts):
            continue  # already reported as unknown-archetype
        if not fires_somewhere[p.node.name] and c.consts:
            c.warn(
                p.node.span,
                "never-fires",
                f"rule {p.node.name!r} can never fire: its `when` is false for every "
                f"archetype it applies to",
            )


def stage_unused_jewels(c: Compilation) -> None:
    """A jewel level no rule asks about."""
    rule_text = "\n".join(p.node.when for p in c.parsed)
    for j in c.all_jewels:
        for lv in j.levels:
            if lv.level in JEWEL_LEVELS and (
                "jewel(" not in rule_text or f'"{lv.level}"' not in rule_text
            ):
                c.warn(
                    lv.span,
                    "unused-jewels",
                    f"jewels {j.name}: level {lv.level!r} is not used by any rule",
                )


def stage_correlation(c: Compilation) -> None:
    """The one `correlate` block: how flows join calls."""
    corrs = [x for f in c.files for x in f.correlate]
    for extra in corrs[1:]:
        c.error(
            extra.span,
            "duplicate-correlate",
            f"only one correlate block is allowed (first at {corrs[0].span})",
        )
    if corrs:
        keys = []
        for jk in corrs[0].keys:
            key = JOIN_KEYS.get((jk.flow_field, jk.call_field)) or JOIN_KEYS.get(
                (jk.call_field, jk.flow_field)
            )
            if key is None:
                c.error(
                    jk.span,
                    "bad-join",
                    f"unknown join {jk.flow_field} == {jk.call_field} (known: "
                    + ", ".join(f"{a} == {b}" for a, b in JOIN_KEYS)
                    + ")",
                )
            else:
                keys.append(key)
        c.join = JoinSpec(tuple(keys) or c.join.keys, corrs[0].window_s or c.join.window_s)


def stage_inline_tests(c: Compilation) -> None:
    """`test` blocks: complete, and naming archetypes and rules that exist."""
    for f in c.files:
        for tst in f.tests:
            if tst.archetype is None or tst.tool is None or tst.expect is None:
                c.error(
                    tst.span,
                    "incomplete-test",
                    f"test {tst.name!r} needs `archetype`, `call` and `expect`",
                )
                continue
            if tst.archetype not in c.arch_nodes:
                c.error(
                    tst.archetype_span or tst.span,
                    "unknown-archetype",
                    f"test {tst.name!r}: unknown archetype {tst.archetype!r}",
                )
            if (
                tst.expect_rule is not None
                and tst.expect_rule not in c.names
                and tst.expect_rule not in ENGINE_RULES
            ):
                c.error(
                    tst.expect_span or tst.span,
                    "unknown-rule",
                    f"test {tst.name!r} expects unknown rule {tst.expect_rule!r}",
                )
            c.tests.append(
                InlineTest(
                    tst.name,
                    str(tst.span),
                    tst.archetype,
                    tst.tool,
                    expand_json(tst.arguments, c.variables, c),
                    tst.agent,
                    tst.expect,
                    tst.expect_rule,
                )
            )


CHECKS: tuple[tuple[str, Stage], ...] = (
    ("variables", stage_variables),
    ("archetypes, jewel matchers, classifier", stage_definitions),
    ("default", stage_default),
    ("rules: parse, type check, cost", stage_rules),
    ("archetypes: fold", stage_fold),
    ("jewels: unused levels", stage_unused_jewels),
    ("correlation", stage_correlation),
    ("inline tests", stage_inline_tests),
)
"""The checking stages, in order: all `policy lint` runs."""


def check_files(
    files: Sequence[ast.PolicyFile], overrides: Mapping[str, str] | None = None
) -> Compilation:
    """Run `CHECKS` on parsed files (imports resolved, in load order); `.diags` is sorted."""
    c = Compilation(files, dict(overrides or {}))
    run_stages(c, CHECKS)
    c.diags.sort(key=lambda d: (d.span.file, d.span.line, d.span.column))
    return c
