"""pytest plugin: collect the inline `test` blocks of `.mcpd` files as pytest items.

A policy repository gets `pytest` (and everything around it: -k, -x, JUnit, IDEs) for its
policies, each test reported under its file and line. The plugin is inert unless asked for,
so installing mcp-defense changes no other project's test run:

    pytest --mcpd policies/                  # or, in pytest.ini / pyproject.toml:
    [tool.pytest.ini_options]
    mcpd_paths = ["policies"]                # collect .mcpd files under these paths
    mcpd_set = ["workspace=/src"]            # like --set
    mcpd_policy = ["extra.mcpd"]             # like --policy: compiled with every file

Each `.mcpd` file with `test` blocks is compiled together with its imports (plus
`mcpd_policy`), as `mcp-defense policy test FILE` would; a file that does not compile is a
collection error showing the diagnostics.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_defense.policy.diagnostics import format_text
from mcp_defense.policy.table import DecisionTable, InlineTest

_HAS_TEST = re.compile(rb'(?m)^[ \t]*test[ \t]+"')


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mcpd", "mcp-defense policy tests (.mcpd inline tests)")
    group.addoption(
        "--mcpd", action="store_true", default=False, help="Collect inline tests from *.mcpd files."
    )
    group.addoption(
        "--mcpd-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Set a policy variable for .mcpd tests (repeatable).",
    )
    group.addoption(
        "--mcpd-policy",
        action="append",
        default=[],
        metavar="PATH",
        help="Extra policy file compiled with every .mcpd file (repeatable).",
    )
    parser.addini(
        "mcpd_paths",
        "Collect .mcpd inline tests under these paths (enables the plugin).",
        type="paths",
        default=[],
    )
    parser.addini(
        "mcpd_set", "Policy variables NAME=VALUE for .mcpd tests.", type="linelist", default=[]
    )
    parser.addini(
        "mcpd_policy",
        "Extra policy files compiled with every .mcpd file.",
        type="paths",
        default=[],
    )


def _enabled_for(config: pytest.Config, path: Path) -> bool:
    roots: list[Path] = list(config.getini("mcpd_paths"))
    if config.getoption("mcpd"):
        return True
    if not roots:
        return False
    rp = path.resolve()
    return any(rp == r.resolve() or r.resolve() in rp.parents for r in roots)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".mcpd" or not _enabled_for(parent.config, file_path):
        return None
    try:
        if not _HAS_TEST.search(file_path.read_bytes()):
            return None  # a fragment (archetypes, jewels…) need not compile on its own
    except OSError:
        return None
    return McpdFile.from_parent(parent, path=file_path)


def _variables(config: pytest.Config) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in [*config.getini("mcpd_set"), *config.getoption("mcpd_set")]:
        name, sep, value = str(item).partition("=")
        if not sep or not name.isidentifier():
            raise pytest.UsageError(f"mcpd: expected NAME=VALUE, got {item!r}")
        out[name] = value
    return out


class McpdFile(pytest.File):
    """One .mcpd file: compiled with its imports; its inline tests become McpdItems."""

    def collect(self) -> Iterator[McpdItem]:
        from mcp_defense.policy.loader import load
        from mcp_defense.replay.runner import select_tests, split_source

        config = self.config
        extra = [str(p) for p in config.getini("mcpd_policy")] + list(
            config.getoption("mcpd_policy")
        )
        result = load([str(self.path), *extra], _variables(config))
        if result.table is None:
            raise self.CollectError("policy does not compile:\n" + format_text(result.errors))
        seen: dict[str, int] = {}
        for t in select_tests(result.table, {self.path.resolve()}, None):
            n = seen[t.name] = seen.get(t.name, 0) + 1
            name = t.name if n == 1 else f"{t.name} [line {split_source(t.source)[1]}]"
            yield McpdItem.from_parent(self, name=name, test=t, table=result.table)


class McpdTestFailure(Exception):
    """Raised by McpdItem.runtest; rendered by repr_failure without a Python traceback."""


class McpdItem(pytest.Item):
    def __init__(self, *, test: InlineTest, table: DecisionTable, **kw: Any) -> None:
        super().__init__(**kw)
        self.test = test
        self.table = table

    def runtest(self) -> None:
        from mcp_defense.replay.runner import inline_call

        t = self.test
        d = self.table.decide(inline_call(t))
        if d.action.value == t.expect and (t.expect_rule is None or d.rule == t.expect_rule):
            return
        from mcp_defense.replay.report import decision_text, explanation_text

        want = t.expect + (f" by {t.expect_rule}" if t.expect_rule else "")
        msg = io.StringIO()
        msg.write(f"{t.source}: test {t.name!r}: expected {want}, got {decision_text(d)}")
        if d.reason:
            msg.write(f": {d.reason}")
        msg.write("\n\n" + explanation_text(self.table, inline_call(t)))
        raise McpdTestFailure(msg.getvalue())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, McpdTestFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int, str]:
        from mcp_defense.replay.runner import split_source

        line = split_source(self.test.source)[1]
        return self.path, max(line - 1, 0), f"{self.path.name}:{line}: mcpd test {self.test.name}"
