"""Layers point one way: read from the source (ast), so a violation fails before it ships.

- nothing below `cli/` imports `cli/`;
- runtimes (proxy, correlate, replay, events, hooks) reach policy text only through
  `policy/loader.py`: they never import the parser, the AST, the compiler or lark;
- no import cycles between modules (lazy imports inside functions count; imports only for
  type checking do not).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "mcp_defense"
RUNTIMES = ("proxy", "correlate", "replay", "events", "hooks")
POLICY_TEXT = (
    "lark",
    "mcp_defense.policy.parser",
    "mcp_defense.policy.ast",
    "mcp_defense.policy.check",
    "mcp_defense.policy.compile",
)
# Cycles owned elsewhere, to be removed by their owners (each entry: the modules in the cycle).
KNOWN_CYCLES: set[frozenset[str]] = {
    frozenset({"mcp_defense.events.record", "mcp_defense.events.recorder"}),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Modules `path` imports at run time (at any depth, but not under `if TYPE_CHECKING`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            for a in node.names:  # `from pkg import module`
                out.add(f"{mod}.{a.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        graph[name] = {m for m in _imports(path) if m in files and m != name}
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


def test_nothing_below_cli_imports_cli() -> None:
    bad = [
        f"{m} imports {dep}"
        for m, deps in _graph().items()
        if _layer(m) != "cli" and m != "mcp_defense.__main__"
        for dep in deps
        if dep == "mcp_defense.cli" or dep.startswith("mcp_defense.cli.")
    ]
    assert not bad, "\n".join(bad)


def test_runtimes_never_import_policy_text() -> None:
    bad = []
    for path in PKG.rglob("*.py"):
        m = _module_name(path)
        if _layer(m) not in RUNTIMES:
            continue
        for dep in _imports(path):
            if any(dep == p or dep.startswith(p + ".") for p in POLICY_TEXT):
                bad.append(f"{m} imports {dep}")
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles() -> None:
    graph = _graph()
    # A package's __init__ importing its own submodules is not a layering cycle.
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not m.startswith(d + ".")}
    cycles = [sorted(c) for c in _cycles(graph) if c not in KNOWN_CYCLES]
    assert not cycles, cycles


def test_the_checker_sees_imports() -> None:
    """The walk itself works: it finds a lazy import and skips TYPE_CHECKING ones."""
    deps = _imports(PKG / "policy" / "compile.py")
    assert "mcp_defense.policy.explain" in deps  # imported inside a function
    assert "mcp_defense.cli" not in {d.rpartition(".")[0] for d in deps}
