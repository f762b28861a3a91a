"""The one front door from policy files to a DecisionTable (runtimes call only this).

Resolves `import`s (relative to the importing file, or `builtin:NAME` for the shipped pack),
loads each file once, and keeps the result of parsing each file keyed by its content hash so a
reload only re-parses what changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mcp_defense.policy import ast
from mcp_defense.policy.check import check_files, version_of
from mcp_defense.policy.compile import compile_files
from mcp_defense.policy.diagnostics import ERROR, Diagnostic, PolicyError
from mcp_defense.policy.parser import parse
from mcp_defense.policy.table import DecisionTable
from mcp_defense.resources import BUILTIN_PREFIX, builtin_policy_dir

PolicyLoadError = PolicyError  # the name runtimes import


@dataclass
class LoadResult:
    table: DecisionTable | None
    diagnostics: list[Diagnostic]
    files: list[Path]  # every file read, imports included (what hot reload watches)
    # display name → text_digest of the text compiled: hot reload compares it with the files
    # to see what really changed (an A→B→A edit racing a load is not lost)
    texts: Mapping[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


def text_digest(text: str) -> str:
    """A short digest of a policy text (hot reload compares files with what was compiled)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


@dataclass
class ParseCache:
    """Parsed files by (path, content hash): unchanged files are not parsed again on reload."""

    entries: dict[tuple[str, str], ast.PolicyFile] = field(default_factory=dict)

    def parse(self, path: str, text: str) -> ast.PolicyFile:
        key = (path, hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest())
        hit = self.entries.get(key)
        if hit is None:
            hit = parse(text, path)
            self.entries = {k: v for k, v in self.entries.items() if k[0] != path}
            self.entries[key] = hit
        return hit


def _display(p: Path) -> str:
    """Paths in diagnostics: relative to cwd when under it, `builtin:` for the shipped pack."""
    try:
        return BUILTIN_PREFIX + str(p.relative_to(builtin_policy_dir()))
    except ValueError:
        pass
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _policy_files(directory: Path) -> list[Path]:
    """`.mcpd` files under a directory, skipping dot-files (editor locks such as emacs's
    `.#main.mcpd`, which is a dangling symlink while the file is open)."""
    return sorted(
        p
        for p in directory.rglob("*.mcpd")
        if not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def _expand_inputs(paths: Sequence[str | Path], diags: list[Diagnostic]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        s = str(raw)
        p = (
            (builtin_policy_dir() / s[len(BUILTIN_PREFIX) :])
            if s.startswith(BUILTIN_PREFIX)
            else Path(s)
        )
        if p.is_dir():
            found = _policy_files(p)
            if not found:
                diags.append(
                    Diagnostic(
                        ast.Span(s, 1, 1),
                        ERROR,
                        "no-policy",
                        f"{s}: directory contains no .mcpd files",
                    )
                )
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            diags.append(Diagnostic(ast.Span(s, 1, 1), ERROR, "not-found", f"{s}: no such file"))
    return out


@dataclass
class _Read:
    files: list[ast.PolicyFile]  # parsed, imports first (load order)
    diagnostics: list[Diagnostic]
    read: list[Path]
    texts: dict[str, str]


def _read(paths: Sequence[str | Path] | None, cache: ParseCache) -> _Read:
    """Read and parse the named files and everything they import."""
    diags: list[Diagnostic] = []
    roots = _expand_inputs(list(paths) if paths else [builtin_policy_dir()], diags)
    files: list[ast.PolicyFile] = []
    read: list[Path] = []
    texts: dict[str, str] = {}
    seen: set[Path] = set()

    def visit(p: Path, via: ast.Import | None) -> None:
        rp = p.resolve()
        if rp in seen:
            return
        seen.add(rp)
        read.append(rp)
        try:
            text = rp.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            span = via.path.span if via else ast.Span(_display(rp), 1, 1)
            diags.append(Diagnostic(span, ERROR, "unreadable", f"cannot read {_display(rp)}: {e}"))
            return
        texts[_display(rp)] = text_digest(text)
        try:
            pf = cache.parse(_display(rp), text)
        except PolicyError as e:
            diags.extend(e.diagnostics)
            return
        for imp in pf.imports:
            target = imp.path.value
            if target.startswith(BUILTIN_PREFIX):
                tp = builtin_policy_dir() / target[len(BUILTIN_PREFIX) :]
            else:
                tp = rp.parent / target
            if tp.is_dir():
                for sub in _policy_files(tp):
                    visit(sub, imp)
            elif tp.is_file():
                visit(tp, imp)
            else:
                lines = pf.source.splitlines()
                diags.append(
                    Diagnostic(
                        imp.path.span,
                        ERROR,
                        "import-not-found",
                        f"import {target!r}: no such file or directory",
                        lines[imp.span.line - 1] if lines else "",
                    )
                )
        files.append(pf)  # imports first, so their definitions come earlier in order

    for root in roots:
        visit(root, None)
    return _Read(files, diags, read, texts)


def load(
    paths: Sequence[str | Path] | None = None,
    variables: Mapping[str, str] | None = None,
    *,
    cache: ParseCache | None = None,
) -> LoadResult:
    """Parse, resolve imports, check and compile. Never raises for policy problems."""
    r = _read(paths, cache or ParseCache())
    if any(d.is_error for d in r.diagnostics):
        return LoadResult(None, r.diagnostics, r.read, r.texts)
    table, more = compile_files(r.files, variables, strict=False)
    return LoadResult(table, r.diagnostics + more, r.read, r.texts)


@dataclass
class CheckResult:
    """What `policy lint` reports: every diagnostic, the files read, and the version the
    policy would have (None when it has errors)."""

    diagnostics: list[Diagnostic]
    files: list[Path]
    version: str | None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


def check(
    paths: Sequence[str | Path] | None = None, variables: Mapping[str, str] | None = None
) -> CheckResult:
    """Parse, resolve imports and run the compiler's checks (`check.CHECKS`) without building
    a decision table: the same diagnostics as `load`, for less work."""
    r = _read(paths, ParseCache())
    if any(d.is_error for d in r.diagnostics):
        return CheckResult(r.diagnostics, r.read, None)
    c = check_files(r.files, variables)
    version = None if c.errors else version_of(r.files, c.variables)
    return CheckResult(r.diagnostics + c.diags, r.read, version)


def load_table(
    paths: Sequence[str | Path] | None = None, variables: Mapping[str, str] | None = None
) -> DecisionTable:
    """Like `load`, but raises PolicyLoadError (with every diagnostic) unless it compiled."""
    result = load(paths, variables)
    if result.table is None:
        raise PolicyError(result.diagnostics)
    return result.table
