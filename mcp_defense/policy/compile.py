"""AST → DecisionTable, with every check that needs the whole policy set.

Partial evaluation happens here: each archetype is a constant, so every rule is lowered once
per archetype and rules that fold to `false` are dropped from that archetype's list. Glob sets
become one regex per jewel level / archetype field, and `call.tool == "x"` conjuncts become a
dict index from tool name to the rules that can fire for it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import posixpath
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from mcp_defense.policy import ast, cel
from mcp_defense.policy.diagnostics import ERROR, WARNING, Diagnostic, PolicyError
from mcp_defense.policy.extract import Classifier, Environment
from mcp_defense.policy.extract import urls as netfacts
from mcp_defense.policy.facts import Action, JoinSpec
from mcp_defense.policy.glob_intersect import JewelPatterns, is_pattern
from mcp_defense.policy.globs import GlobError, GlobSet, glob_to_regex
from mcp_defense.policy.limits import MAX_EXPANSION_CHARS, MAX_STRING_CHARS, size
from mcp_defense.policy.schema import RULE_SCOPES
from mcp_defense.policy.table import (
    ArchetypeConst,
    ArchetypeRules,
    CompiledRule,
    DecisionTable,
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
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOOL_EQ = re.compile(r'^\s*\(?\s*call\.tool\s*==\s*"((?:[^"\\]|\\.)*)"\s*\)?\s*$')
_TOOL_IN = re.compile(r"^\s*\(?\s*call\.tool\s+in\s+\[([^\]]*)\]\s*\)?\s*$")


def builtin_variables() -> dict[str, str]:
    """Variables every policy has; `--set` overrides them."""
    return {"workspace": os.getcwd(), "home": os.path.expanduser("~")}


STAGES = (
    "variables",
    "archetypes, jewel matchers, classifier",
    "default",
    "rules: parse, type check, cost",
    "archetypes: fold and lower",
    "jewels: unused levels",
    "correlation",
    "inline tests",
    "table",
)
"""The compiler's stages, in order: `policy compile --timings` reports the time of each."""


@dataclass
class _Ctx:
    files: Sequence[ast.PolicyFile]
    diags: list[Diagnostic]
    timings: list[tuple[str, float]] = field(default_factory=list)  # (stage, ms), in order
    expanded: int = 0  # characters `${…}` expansion added so far (MAX_EXPANSION_CHARS)
    _stage: str = ""
    _t0: float = 0.0
    _lines: dict[str, list[str]] = field(default_factory=dict)

    def stage(self, name: str) -> None:
        """Close the running stage (its time is recorded) and start `name` ("" to finish)."""
        now = time.perf_counter()
        if self._stage:
            self.timings.append((self._stage, (now - self._t0) * 1e3))
        self._stage, self._t0 = name, now

    def line(self, span: ast.Span) -> str:
        lines = self._lines.get(span.file)
        if lines is None:
            for f in self.files:
                if f.path == span.file:
                    lines = self._lines[span.file] = f.source.splitlines()
                    break
            else:
                return ""
        return lines[span.line - 1] if 0 < span.line <= len(lines) else ""

    def error(self, span: ast.Span, code: str, msg: str) -> None:
        self.diags.append(Diagnostic(span, ERROR, code, msg, self.line(span)))

    def warn(self, span: ast.Span, code: str, msg: str) -> None:
        self.diags.append(Diagnostic(span, WARNING, code, msg, self.line(span)))


# ---------------------------------------------------------------------------------------------
# Variables


def _expand(s: ast.Str, variables: Mapping[str, str], c: _Ctx) -> str:
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


def _expand_json(value: Any, variables: Mapping[str, str], c: _Ctx) -> Any:
    if isinstance(value, ast.Str):
        return _expand(value, variables, c)
    if isinstance(value, dict):
        return {k: _expand_json(v, variables, c) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_json(v, variables, c) for v in value]
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


# ---------------------------------------------------------------------------------------------
# Archetypes, jewels, classification


def _globset(
    targets: ast.Targets | None, variables: Mapping[str, str], c: _Ctx, default_any: bool
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
    globs: Sequence[str], span: ast.Span, c: _Ctx, *, icase: bool = False
) -> GlobSet:
    """A GlobSet; a set RE2 cannot hold (too large) is a `bad-glob` error, not a traceback."""
    try:
        return GlobSet(globs, ignore_case=icase)
    except GlobError as e:
        c.error(span, "bad-glob", str(e))
        return GlobSet(())


def _net_entries(
    targets: ast.Targets, variables: Mapping[str, str], c: _Ctx
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


def _archetype(a: ast.Archetype, variables: Mapping[str, str], c: _Ctx) -> ArchetypeConst:
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


def _runtime_globs(a: ast.Archetype, variables: Mapping[str, str], c: _Ctx) -> tuple[str, ...]:
    """The `runtime` paths (--sandbox only): never "any"."""
    gs = _globset(a.runtime, variables, c, default_any=False) if a.runtime else None
    return tuple(gs.globs) if gs is not None else ()


_ENV_NAME = re.compile(r"[A-Za-z_*?][A-Za-z0-9_*?]*")


def _env_spec(decl: ast.EnvDecl | None, variables: Mapping[str, str], c: _Ctx) -> EnvSpec:
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
    jewels: Sequence[ast.Jewels], variables: Mapping[str, str], c: _Ctx
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
    blocks: Sequence[ast.Classify], variables: Mapping[str, str], c: _Ctx
) -> Classifier:
    tools: list[tuple[list[str], list[str]]] = []
    keys: list[tuple[list[str], str | None, list[str]]] = []
    for b in blocks:
        for t in b.tools:
            tools.append(([_expand(s, variables, c) for s in t.patterns], list(t.effects)))
        for k in b.keys:
            keys.append(([_expand(s, variables, c) for s in k.keys], k.role, list(k.effects)))
    return Classifier.build(tools, keys)


# ---------------------------------------------------------------------------------------------
# Rules


@dataclass
class _ParsedRule:
    node: ast.Rule
    order: int
    tree: Any
    tools: tuple[str, ...]


def _cel_span(rule: ast.Rule, err: cel.CelError) -> ast.Span:
    line = rule.when_span.line + max(err.line, 1) - 1
    col = rule.when_span.column + max(err.column, 1) - 1 if err.line <= 1 else max(err.column, 1)
    return ast.Span(rule.when_span.file, line, col)


def _tool_index(tree: Any) -> tuple[str, ...]:
    for text, _sub in cel.clauses(tree):
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


_GLOB_CACHE_MAX = 1024


def _functions(
    jewel: Callable[[str], str], jewel_set: Callable[[str], str]
) -> dict[str, Callable[..., Any]]:
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
    }[r.action]


# ---------------------------------------------------------------------------------------------
# The whole set


def version_of(files: Sequence[ast.PolicyFile], variables: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        h.update(os.path.basename(f.path).encode() + b"\0" + f.source.encode() + b"\0")
    for k in sorted(variables):
        h.update(f"{k}={variables[k]}\0".encode())
    return h.hexdigest()[:12]


def compile_files(
    files: Sequence[ast.PolicyFile],
    overrides: Mapping[str, str] | None = None,
    *,
    strict: bool = True,
) -> tuple[DecisionTable | None, list[Diagnostic]]:
    """Compile parsed files (imports already resolved, in load order).

    Returns the table (None when there are errors) and every diagnostic, warnings included.
    """
    c = _Ctx(files, [])
    overrides = dict(overrides or {})

    # Variables: built-ins < `let` defaults < --set.
    c.stage("variables")
    variables = builtin_variables()
    lets: dict[str, ast.Let] = {}
    for f in files:
        for let in f.lets:
            if let.name in lets and lets[let.name].value.value != let.value.value:
                c.error(
                    let.span,
                    "duplicate-variable",
                    f"variable {let.name!r} already defined at {lets[let.name].span}",
                )
            lets[let.name] = let
    for name, let in lets.items():
        if name not in overrides:
            variables[name] = _expand(let.value, {**variables, **overrides}, c)
    variables.update(overrides)
    for k in ("workspace", "home"):
        if variables.get(k):
            variables[k] = posixpath.normpath(os.path.abspath(os.path.expanduser(variables[k])))

    # Archetypes.
    c.stage("archetypes, jewel matchers, classifier")
    arch_nodes: dict[str, ast.Archetype] = {}
    for f in files:
        for a in f.archetypes:
            if a.name in arch_nodes:
                c.error(
                    a.span,
                    "duplicate-archetype",
                    f"archetype {a.name!r} already defined at {arch_nodes[a.name].span}",
                )
                continue
            arch_nodes[a.name] = a
    consts = {name: _archetype(a, variables, c) for name, a in arch_nodes.items()}

    all_jewels = [j for f in files for j in f.jewels]
    jewel, jewel_set = _jewel_matcher(all_jewels, variables, c)
    classifier = _classifier([b for f in files for b in f.classify], variables, c)
    env = Environment(
        workspace=variables["workspace"],
        home=variables["home"],
        user=os.path.basename(variables["home"]),
    )

    # Default decision.
    c.stage("default")
    default: tuple[Action, str, str] = (
        Action.DENY,
        "no rule matched and the policy declares no default (fail closed)",
        "",
    )
    seen_default: ast.Default | None = None
    for f in files:
        for d in f.defaults:
            if seen_default is not None and seen_default.action != d.action:
                c.error(
                    d.span,
                    "conflicting-default",
                    f"default {d.action} conflicts with default {seen_default.action} "
                    f"at {seen_default.span}",
                )
                continue
            if d.action not in RULE_ACTIONS["rule"] and d.action != "approve":
                c.error(d.span, "bad-action", f"default cannot be {d.action}")
                continue
            seen_default = d
            reason = d.reason.value if d.reason else f"no rule matched (default {d.action})"
            default = (Action(d.action), reason, str(d.span))

    # Rules: parse, check, cost.
    c.stage("rules: parse, type check, cost")
    functions = _functions(jewel, jewel_set)
    var_names = tuple(sorted(variables))
    parsed: list[_ParsedRule] = []
    names: dict[str, ast.Rule] = {}
    order = 0
    for f in files:
        for r in f.rules:
            order += 1
            if r.name in names:
                c.error(
                    r.span,
                    "duplicate-rule",
                    f"rule {r.name!r} already defined at {names[r.name].span}",
                )
                continue
            names[r.name] = r
            if r.action not in RULE_ACTIONS[r.kind]:
                c.error(
                    r.action_span,
                    "bad-action",
                    f"{r.kind} rules cannot {r.action} (allowed: "
                    f"{', '.join(sorted(RULE_ACTIONS[r.kind]))})",
                )
                continue
            for scoped in r.scope:
                if scoped not in arch_nodes:
                    c.error(
                        r.scope_span or r.span,
                        "unknown-archetype",
                        f"rule {r.name!r} is scoped to unknown archetype {scoped!r}",
                    )
            env_cel = cel.CelEnv(RULE_SCOPES[r.kind], var_names, functions)
            try:
                tree = cel.parse(r.when)
                typ = cel.check(tree, env_cel)
                cost = cel.estimate_cost(tree, env_cel)
            except cel.CelError as e:
                c.error(_cel_span(r, e), "cel", e.message)
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
            for w in cel.unguarded(tree, env_cel):
                c.warn(_cel_span(r, w), "unguarded-field", w.message)
            if r.reason is not None:
                for name in ReasonTemplate.parse(r.reason.value).fields():
                    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                        c.error(r.reason.span, "bad-reason", f"bad placeholder {{{name}}}")
            parsed.append(
                _ParsedRule(r, order, tree, _tool_index(tree) if r.kind == "rule" else ())
            )

    # Per-archetype lowering (partial evaluation).
    c.stage("archetypes: fold and lower")
    per_arch: dict[str, ArchetypeRules] = {}
    fires_somewhere: dict[str, bool] = {p.node.name: False for p in parsed}
    for name, const in consts.items():
        generic: list[CompiledRule] = []
        indexed: list[CompiledRule] = []
        flows: list[CompiledRule] = []
        orphans: list[CompiledRule] = []
        responses: list[CompiledRule] = []
        dropped: list[str] = []
        for p in parsed:
            r = p.node
            if r.scope and name not in r.scope:
                continue
            env_cel = cel.CelEnv(RULE_SCOPES[r.kind], var_names, functions)
            try:
                lowered = cel.lower(p.tree, env_cel, {"archetype": const, "vars": dict(variables)})
            except cel.CelError as e:
                c.error(_cel_span(r, e), "cel", e.message)
                continue
            except cel.CelEvalError as e:
                c.error(r.when_span, "cel-eval", f"always fails for archetype {name!r}: {e}")
                continue
            if lowered.const and lowered.value is not True:
                dropped.append(r.name)
                continue
            fires_somewhere[r.name] = True
            fn = lowered.fn
            clause_fns = _lazy_clauses(
                p.tree, env_cel, {"archetype": const, "vars": dict(variables)}
            )
            template = ReasonTemplate.parse(r.reason.value if r.reason else _default_reason(r))
            cr = CompiledRule(
                r.name,
                r.kind,
                Action(r.action),
                r.priority,
                p.order,
                fn,
                template,
                str(r.span),
                r.learn,
                r.when.strip(),
                p.tools,
                clause_fns,
            )
            if r.kind == "flow":
                flows.append(cr)
            elif r.kind == "orphan":
                orphans.append(cr)
            elif r.kind == "response":
                responses.append(cr)
            elif p.tools:
                indexed.append(cr)
            else:
                generic.append(cr)
        generic.sort(key=lambda x: x.sort_key)
        by_tool: dict[str, tuple[CompiledRule, ...]] = {}
        for cr in indexed:
            for t in cr.tools:
                by_tool.setdefault(t, ())
        for t in by_tool:
            by_tool[t] = tuple(
                sorted([*generic, *(x for x in indexed if t in x.tools)], key=lambda x: x.sort_key)
            )
        per_arch[name] = ArchetypeRules(
            const,
            tuple(generic),
            by_tool,
            tuple(sorted(flows, key=lambda x: x.sort_key)),
            tuple(sorted(orphans, key=lambda x: x.sort_key)),
            tuple(dropped),
            tuple(sorted(responses, key=lambda x: x.sort_key)),
        )

    for p in parsed:
        if p.node.scope and not set(p.node.scope) & set(consts):
            continue  # already reported as unknown-archetype
        if not fires_somewhere[p.node.name] and consts:
            c.warn(
                p.node.span,
                "never-fires",
                f"rule {p.node.name!r} can never fire: its `when` is false for every "
                f"archetype it applies to",
            )

    # Unused jewels: a level no rule asks about.
    c.stage("jewels: unused levels")
    rule_text = "\n".join(p.node.when for p in parsed)
    for j in all_jewels:
        for lv in j.levels:
            if lv.level in JEWEL_LEVELS and (
                "jewel(" not in rule_text or f'"{lv.level}"' not in rule_text
            ):
                c.warn(
                    lv.span,
                    "unused-jewels",
                    f"jewels {j.name}: level {lv.level!r} is not used by any rule",
                )

    # Correlation.
    c.stage("correlation")
    join = JoinSpec()
    corrs = [x for f in files for x in f.correlate]
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
        join = JoinSpec(tuple(keys) or join.keys, corrs[0].window_s or join.window_s)

    # Inline tests.
    c.stage("inline tests")
    tests: list[InlineTest] = []
    for f in files:
        for tst in f.tests:
            if tst.archetype is None or tst.tool is None or tst.expect is None:
                c.error(
                    tst.span,
                    "incomplete-test",
                    f"test {tst.name!r} needs `archetype`, `call` and `expect`",
                )
                continue
            if tst.archetype not in arch_nodes:
                c.error(
                    tst.archetype_span or tst.span,
                    "unknown-archetype",
                    f"test {tst.name!r}: unknown archetype {tst.archetype!r}",
                )
            if (
                tst.expect_rule is not None
                and tst.expect_rule not in names
                and tst.expect_rule
                not in ("malformed_arguments", "unknown_archetype", "rule_error", "internal_error")
            ):
                c.error(
                    tst.expect_span or tst.span,
                    "unknown-rule",
                    f"test {tst.name!r} expects unknown rule {tst.expect_rule!r}",
                )
            tests.append(
                InlineTest(
                    tst.name,
                    str(tst.span),
                    tst.archetype,
                    tst.tool,
                    _expand_json(tst.arguments, variables, c),
                    tst.agent,
                    tst.expect,
                    tst.expect_rule,
                )
            )

    c.stage("table")
    errors = [d for d in c.diags if d.is_error]
    c.diags.sort(key=lambda d: (d.span.file, d.span.line, d.span.column))
    if errors:
        if strict:
            raise PolicyError(c.diags)
        return None, c.diags

    summary = {
        "archetypes": {
            n: {
                "rules": len(set(a.generic).union(*a.by_tool.values())),
                "indexed_tools": sorted(a.by_tool),
                "flow_rules": len(a.flow),
                "orphan_rules": len(a.orphan),
                "dropped": list(a.dropped),
            }
            for n, a in per_arch.items()
        },
        "rules": len(parsed),
        "jewel_globs": sum(len(lv.globs) for j in all_jewels for lv in j.levels),
        "classify": {
            "tools": len(classifier.tool_exact) + len(classifier.tool_globs),
            "keys": len(classifier.key_roles),
        },
        "tests": len(tests),
        "default": default[0].value,
        "join": {"keys": list(join.keys), "window_s": join.window_s},
    }
    from mcp_defense.policy.explain import explain as explainer

    table = DecisionTable(
        version=version_of(files, variables),
        files=[f.path for f in files],
        variables=variables,
        archetypes=per_arch,
        classifier=classifier,
        env=env,
        default=default,
        join=join,
        tests=tests,
        rule_fingerprints={p.node.name: _fingerprint(p.node) for p in parsed},
        explainer=explainer,
        summary=summary,
        jewels=jewel,
    )
    c.stage("")
    table.timings = tuple(c.timings)
    return table, c.diags
