"""Diagnostics: `file:line:col: severity: message`, with the source line and a caret."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_defense.policy.ast import Span

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    span: Span
    severity: str
    code: str
    message: str
    source_line: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def short(self) -> str:
        return f"{self.span}: {self.severity}: {self.message} [{self.code}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.column,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
        }


class PolicyError(Exception):
    """Raised when a policy set has errors; carries every diagnostic, not only the first."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        errs = [d for d in self.diagnostics if d.is_error]
        super().__init__("\n".join(d.short() for d in errs) or "policy error")


def format_text(diags: Iterable[Diagnostic]) -> str:
    out: list[str] = []
    for d in diags:
        out.append(d.short())
        if d.source_line:
            line = d.source_line.rstrip("\n").expandtabs(1)
            out.append(f"    {line}")
            out.append("    " + " " * max(d.span.column - 1, 0) + "^")
    return "\n".join(out)


def format_json(diags: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diags], indent=2)


def _gh_escape(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def format_github(diags: Iterable[Diagnostic]) -> str:
    """GitHub Actions workflow commands, so CI annotates the offending line in the PR."""
    out = []
    for d in diags:
        level = "error" if d.is_error else "warning"
        out.append(
            f"::{level} file={d.span.file},line={d.span.line},col={d.span.column},"
            f"title=mcpd {d.code}::{_gh_escape(d.message)}"
        )
    return "\n".join(out)
