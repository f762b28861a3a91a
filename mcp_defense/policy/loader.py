"""The one front door from policy files to a DecisionTable (runtimes call only this).

Resolves `import`s (relative to the importing file, or `builtin:NAME` for the shipped pack),
loads each file once, and keeps the result of parsing each file keyed by its content hash so a
reload only re-parses what changed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mcp_defense.policy import ast, background
from mcp_defense.policy.check import check_files, version_of
from mcp_defense.policy.compile import compile_files
from mcp_defense.policy.diagnostics import ERROR, Diagnostic, PolicyError
from mcp_defense.policy.limits import MAX_DIRECTORY_ENTRIES, MAX_POLICY_BYTES
from mcp_defense.policy.parser import parse, too_large
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


class PolicyTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"more than {MAX_POLICY_BYTES} bytes")
        self.size = size


def read_policy(path: Path) -> str:
    """A policy file's text, as `read_text` gives it (UTF-8, universal newlines), reading at
    most MAX_POLICY_BYTES + 1 bytes: a larger file raises PolicyTooLarge, never fills memory."""
    with path.open("rb") as fh:
        data = fh.read(MAX_POLICY_BYTES + 1)
        if len(data) > MAX_POLICY_BYTES:
            raise PolicyTooLarge(max(len(data), os.fstat(fh.fileno()).st_size))
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


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


class DirectoryTooLarge(Exception):
    pass


def policy_files(directory: Path) -> list[Path]:
    """`.mcpd` files under a directory, skipping dot-files and dot-directories (editor locks
    such as emacs's `.#main.mcpd`, a dangling symlink while the file is open; `.git`). Symlinks
    to directories are not followed, and past MAX_DIRECTORY_ENTRIES entries looked at it
    raises DirectoryTooLarge: finding policy files never walks a whole file system."""
    found: list[Path] = []
    seen = 0
    stack = [directory]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as entries:
                for e in entries:
                    seen += 1
                    if seen > MAX_DIRECTORY_ENTRIES:
                        raise DirectoryTooLarge(
                            f"{_display(directory)}: more than {MAX_DIRECTORY_ENTRIES:,} "
                            "entries to search for .mcpd files; name the files or a smaller "
                            "directory"
                        )
                    if e.name.startswith("."):
                        continue
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
                    elif e.name.endswith(".mcpd"):
                        found.append(Path(e.path))
        except (NotADirectoryError, PermissionError, FileNotFoundError):
            continue
    return sorted(found)


def _policy_roots(paths: Sequence[str | Path] | None) -> list[Path]:
    """The directories a directory import may name: those of the files (and the directories)
    named on the command line, and the built-in pack's."""
    roots = [builtin_policy_dir().resolve()]
    for raw in paths or ():
        p = _input_path(str(raw))
        roots.append(p.resolve() if p.is_dir() else p.resolve().parent)
    return roots


def _input_path(s: str) -> Path:
    if s.startswith(BUILTIN_PREFIX):
        return builtin_policy_dir() / s[len(BUILTIN_PREFIX) :]
    return Path(s)


def _expand_inputs(paths: Sequence[str | Path], diags: list[Diagnostic]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        s = str(raw)
        p = _input_path(s)
        if p.is_dir():
            try:
                found = policy_files(p)
            except DirectoryTooLarge as e:
                diags.append(Diagnostic(ast.Span(s, 1, 1), ERROR, "too-large", str(e)))
                continue
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


class _Reader:
    """Reads files and their imports depth first (imports come first in load order). A class,
    not a recursive closure: that closure is a reference cycle keeping every AST alive."""

    def __init__(self, roots: list[Path], diags: list[Diagnostic], cache: ParseCache) -> None:
        self.roots = roots
        self.diags = diags
        self.cache = cache
        self.files: list[ast.PolicyFile] = []
        self.read: list[Path] = []
        self.texts: dict[str, str] = {}
        self.seen: set[Path] = set()

    def visit(self, p: Path, via: ast.Import | None) -> None:
        rp = p.resolve()
        if rp in self.seen:
            return
        self.seen.add(rp)
        self.read.append(rp)
        try:
            text = read_policy(rp)
        except PolicyTooLarge as e:
            self.diags.append(too_large(_display(rp), e.size))
            return
        except (OSError, UnicodeDecodeError) as e:
            span = via.path.span if via else ast.Span(_display(rp), 1, 1)
            self.diags.append(
                Diagnostic(span, ERROR, "unreadable", f"cannot read {_display(rp)}: {e}")
            )
            return
        self.texts[_display(rp)] = text_digest(text)
        try:
            pf = self.cache.parse(_display(rp), text)
        except PolicyError as e:
            self.diags.extend(e.diagnostics)
            return
        lines = pf.source.splitlines() if pf.imports else []

        def refuse(imp: ast.Import, code: str, msg: str) -> None:
            line = lines[imp.span.line - 1] if 0 < imp.span.line <= len(lines) else ""
            self.diags.append(Diagnostic(imp.path.span, ERROR, code, msg, line))

        for imp in pf.imports:
            target = imp.path.value
            if target.startswith(BUILTIN_PREFIX):
                tp = builtin_policy_dir() / target[len(BUILTIN_PREFIX) :]
            else:
                tp = rp.parent / target
            if tp.is_dir():
                rd = tp.resolve()
                if not any(rd.is_relative_to(root) for root in self.roots):
                    refuse(
                        imp,
                        "import-outside",
                        f"import {target!r}: a directory outside the policy's directories "
                        "(those of the files named on the command line, and builtin:); "
                        "import its .mcpd files by name",
                    )
                    continue
                try:
                    subs = policy_files(tp)
                except DirectoryTooLarge as e:
                    refuse(imp, "too-large", f"import {target!r}: {e}")
                    continue
                for sub in subs:
                    if sub.resolve().suffix != ".mcpd":
                        refuse(
                            imp,
                            "not-policy",
                            f"import {target!r}: imports only .mcpd files, and "
                            f"{_display(sub)} links to {sub.resolve()}",
                        )
                    else:
                        self.visit(sub, imp)
            elif tp.is_file():
                # By name only: the content of a file that is not a policy is never read (a
                # syntax error would quote its first line, e.g. of /etc/passwd, in CI logs).
                if tp.suffix != ".mcpd" or tp.resolve().suffix != ".mcpd":
                    refuse(imp, "not-policy", f"import {target!r}: imports only .mcpd files")
                    continue
                self.visit(tp, imp)
            else:
                refuse(imp, "import-not-found", f"import {target!r}: no such file or directory")
        self.files.append(pf)  # imports first, so their definitions come earlier in order


def _read(paths: Sequence[str | Path] | None, cache: ParseCache) -> _Read:
    """Read and parse the named files and everything they import."""
    diags: list[Diagnostic] = []
    inputs = list(paths) if paths else [builtin_policy_dir()]
    roots = _policy_roots(inputs)
    named = _expand_inputs(inputs, diags)
    reader = _Reader(roots, diags, cache)
    for p in named:
        reader.visit(p, None)
    return _Read(reader.files, diags, reader.read, reader.texts)


def load(
    paths: Sequence[str | Path] | None = None,
    variables: Mapping[str, str] | None = None,
    *,
    cache: ParseCache | None = None,
) -> LoadResult:
    """Parse, resolve imports, check and compile. Never raises for policy problems."""
    with background.paused():
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
    with background.paused():
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
