"""`mcp-defense policy watch [PATH...]`: re-lint and re-run inline tests on every save.

It runs the same `PolicyReloader` the proxies run, so what an author sees while editing
(editor temp files, renames, imports, broken saves) is exactly how production reloads behave.
On a terminal the report is one rich Live view redrawn in place; piped, each reload appends
a plain-text report, so CI logs and tests can read it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mcp_defense.cli.common import PolicyOpt, SetOpt, parse_sets
from mcp_defense.policy.diagnostics import Diagnostic
from mcp_defense.policy.reload import PolicyReloader, ReloadOutcome
from mcp_defense.replay.runner import (
    InlineResult,
    Report,
    policy_file_set,
    run_inline,
    select_tests,
)


def _diagnostic(d: Diagnostic) -> Text:
    colour = "red" if d.is_error else "yellow"
    t = Text()
    t.append(str(d.span), style="bold")
    t.append(": ")
    t.append(d.severity, style=colour)
    t.append(f": {d.message} ")
    t.append(f"[{d.code}]", style="dim")
    if d.source_line:
        t.append("\n    " + d.source_line.rstrip().expandtabs(1))
        t.append("\n    " + " " * max(d.span.column - 1, 0))
        t.append("^", style=colour)
    return t


def _tests_table(results: list[InlineResult]) -> Table:
    t = Table(title="inline tests", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("", "test", "expected", "got", "where"):
        t.add_column(col)
    for r in sorted(results, key=lambda r: (r.passed, r.file, r.line)):
        got = r.decision.action.value + (f" by {r.decision.rule}" if r.decision.rule else "")
        t.add_row(
            Text("✓", style="green") if r.passed else Text("✗", style="bold red"),
            r.test.name,
            r.expected_text(),
            Text(got, style="" if r.passed else "red"),
            Text(r.test.source, style="dim"),
        )
    return t


def render(out: ReloadOutcome, at: float, only: set[Path] | None = None) -> RenderableType:
    """One report: diagnostics (warnings too), then the inline tests: those of the files in
    `only`, or every test of the new policy (imports included) when it is None — the same
    rule as `policy test`."""
    diags = list(out.result.diagnostics) or list(out.diagnostics)
    errors = [d for d in diags if d.is_error] or list(out.diagnostics)
    parts: list[RenderableType] = [_diagnostic(d) for d in diags if d not in errors]
    parts += [_diagnostic(d) for d in errors]
    table = out.result.table if out.ok else None
    results: list[InlineResult] = []
    if table is not None:
        report = Report(table.version)
        run_inline(table, select_tests(table, only, None), report)
        results = report.inline
        if results:
            parts.append(_tests_table(results))
    failed = sum(1 for r in results if not r.passed)
    ok = out.ok and not failed
    line = Text()
    line.append("✓ " if ok else "✗ ", style="bold green" if ok else "bold red")
    if table is None:
        line.append(f"{len(errors)} error(s): the policy does not compile", style="red")
        if out.version:
            line.append(f"; the runtime would keep version {out.version}")
    else:
        line.append(f"{len(results) - failed}/{len(results)} inline tests pass · ")
        warnings = sum(1 for d in diags if not d.is_error)
        line.append(f"{warnings} warning(s) · version {table.version}")
        if out.old_version and (out.added or out.removed or out.changed):
            line.append(f" · rules +{len(out.added)} -{len(out.removed)} ~{len(out.changed)}")
    line.append(f"  {time.strftime('%H:%M:%S', time.localtime(at))}", style="dim")
    files = ", ".join(str(f) for f in out.result.files)
    parts.append(line)
    parts.append(Text(f"watching {files} (Ctrl-C to stop)", style="dim"))
    return Group(*parts)


def watch(
    paths: Annotated[
        list[str] | None,
        typer.Argument(help="Files or directories (default: the built-in pack)."),
    ] = None,
    policy: PolicyOpt = None,
    sets: SetOpt = None,
    with_imports: Annotated[
        bool,
        typer.Option(
            "--with-imports",
            help="Also run the inline tests of the files the named ones import (as with no PATH).",
        ),
    ] = False,
) -> None:
    """Re-lint and re-run inline tests on every save, in a live view (Ctrl-C to stop).

    Which inline tests run is the rule of `policy test`: those of the files named as PATH;
    with no PATH (only --policy, or nothing), every test of the policy, imports included.

    Uses the runtimes' own reloader, so editor renames, imports and broken saves behave as they will in production.

    Exit code: 0 when stopped (Ctrl-C), 2 on a usage error.
    """
    variables = parse_sets(sets)
    console = Console(highlight=False)
    lock = threading.Lock()
    live: Live | None = None

    only = None if with_imports or not paths else policy_file_set(Path(p) for p in paths)

    def show(out: ReloadOutcome) -> None:
        view = render(out, time.time(), only)
        with lock:
            if live is not None:
                live.update(view, refresh=True)
            else:
                console.rule()
                console.print(view)

    reloader = PolicyReloader(
        [*(paths or []), *(policy or [])] or None, variables, stderr=None, on_reload=show
    )
    try:
        if console.is_terminal:
            with Live(Text("loading…", style="dim"), console=console, auto_refresh=False) as lv:
                with lock:
                    live = lv
                reloader.start()
                _until_interrupted()
        else:
            reloader.start()
            _until_interrupted()
    except KeyboardInterrupt:
        pass
    finally:
        reloader.stop()


def _until_interrupted() -> None:
    """Sleep until Ctrl-C. A bare `Event().wait()` can sit in one uninterruptible lock
    acquire and never see the KeyboardInterrupt (the watch then ignored Ctrl-C); short
    timed waits give the signal handler its turn."""
    idle = threading.Event()
    while not idle.wait(0.2):
        pass


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)
