"""`mcp-defense policy test`: inline tests and replays of recorded traffic, for CI.

Only option parsing and output plumbing live here; the runner, coverage and reporters are in
`mcp_defense.replay` so the pytest plugin and other tools share them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from mcp_defense.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_USAGE,
    PolicyOpt,
    SetOpt,
    err_console,
    parse_sets,
    print_diagnostics_rich,
    render_diagnostics,
    usage_error,
)

PROGRESS_MIN_BYTES = 1 << 20  # a replay shorter than this finishes before a bar is worth it
MAX_ERRORS_SHOWN = 20


class TestFormat(StrEnum):
    text = "text"
    json = "json"
    junit = "junit"
    github = "github"


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A rich bar on stderr for long replays on a terminal; nothing otherwise."""
    if not enabled or total < PROGRESS_MIN_BYTES:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=total)
        yield lambda pos: bar.update(task, completed=pos)


def test_cmd(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help=".mcpd files (their inline tests run), recordings written by "
            "--record, JSON-RPC transcripts (one client→server message per line), "
            "or directories of these (.mcpd and .jsonl files). None: the inline "
            "tests of the policy.",
            show_default=False,
        ),
    ] = None,
    policy: PolicyOpt = None,
    sets: SetOpt = None,
    archetype: Annotated[
        str,
        typer.Option(
            "--archetype",
            "-a",
            help="Archetype of the server a transcript was "
            "captured from (recordings carry their own).",
        ),
    ] = "",
    fmt: Annotated[
        TestFormat,
        typer.Option(
            "--format",
            "-f",
            help="text, json, junit (JUnit XML) or github (GitHub Actions annotations).",
        ),
    ] = TestFormat.text,
    coverage: Annotated[
        bool,
        typer.Option(
            "--coverage",
            help="Report how often each rule decided, and list "
            "the rules that never did, by file:line.",
        ),
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            min=0.0,
            max=100.0,
            help="Exit 1 when rule coverage is below PCT percent (implies --coverage).",
            metavar="PCT",
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="Only cases whose name matches REGEX (inline "
            "tests: the test name; recorded calls: 'FILE:LINE TOOL').",
            metavar="REGEX",
        ),
    ] = None,
    fail_on_change: Annotated[
        bool,
        typer.Option(
            "--fail-on-change/--no-fail-on-change",
            help="Whether a recorded "
            "call now decided differently fails the run (a reviewer's `expect` "
            "that is not met always fails).",
        ),
    ] = True,
    with_imports: Annotated[
        bool,
        typer.Option(
            "--with-imports",
            help="Also run the inline tests of the files the named policy files import "
            "(with no policy PATH, every test of the policy runs anyway).",
        ),
    ] = False,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="Pass even when the recordings or transcripts given hold no call to replay "
            "(by default that fails: a CI gate pointed at a wrong or empty file must not pass).",
        ),
    ] = False,
) -> None:
    """Run inline tests and replay recorded sessions against a policy; show what changes.

    Each recorded tool_call is decided again. Its expectation is the line's `expect` field
    when a reviewer set one, else the decision recorded live. Calls decided differently are
    listed grouped by rule, with the recording's file:line and the `policy explain` trace.
    A PATH that is a .mcpd file or directory is also part of the policy under test, and its
    inline tests run; with no PATH (only --policy, or nothing), every inline test of the
    policy runs, imports included. `--with-imports` adds the imports' tests to a PATH's.
    `policy watch` follows the same rule.

    Exit codes: 0 every test passed and no decision changed; 1 a test failed, a decision
    changed (unless --no-fail-on-change), coverage is below --threshold, or recordings were
    given but held no call (unless --allow-empty); 2 usage error,
    policy error, or unreadable input (an invalid recording line is reported as file:line).
    """
    from mcp_defense import replay
    from mcp_defense.policy.loader import load
    from mcp_defense.replay import coverage as cov_mod
    from mcp_defense.replay import report as rep

    run_re = None
    if run is not None:
        try:
            run_re = re.compile(run)
        except re.error as e:
            raise usage_error(f"--run {run!r}: {e}") from None
    try:
        the_plan = replay.plan(paths or [])
    except replay.ReplayInputError as e:
        raise usage_error(str(e)) from None
    if the_plan.transcripts and not archetype:
        names = ", ".join(str(p) for p in the_plan.transcripts)
        raise usage_error(
            f"{names}: a JSON-RPC transcript does not say what server it came "
            "from; give --archetype"
        )
    policy_paths = [*(policy or []), *(str(p) for p in the_plan.policies)]
    result = load(policy_paths or None, parse_sets(sets))
    table = result.table
    if table is None:
        if fmt in (TestFormat.github, TestFormat.json):
            sys.stdout.write(render_diagnostics(result.errors, fmt.value) + "\n")
        else:
            console = err_console()
            print_diagnostics_rich(console, result.errors)
            console.print(f"[bold red]policy has {len(result.errors)} error(s)[/]")
        raise typer.Exit(EXIT_USAGE)
    if archetype and archetype not in table.archetypes:
        raise usage_error(
            f"unknown archetype {archetype!r}; the policy defines: "
            + ", ".join(sorted(table.archetypes))
        )

    with _progress(the_plan.replay_bytes, sys.stderr.isatty()) as progress:
        try:
            report = replay.run(
                table,
                the_plan,
                archetype=archetype,
                run_re=run_re,
                fail_on_change=fail_on_change,
                keep_passing=fmt is TestFormat.junit,
                progress=progress,
                with_imports=with_imports,
            )
        except replay.ReplayInputError as e:
            raise usage_error(str(e)) from None
    cov = cov_mod.compute(table, report.hits) if coverage or threshold is not None else None
    if report.errors:
        code = EXIT_USAGE
    elif report.failed or rep.below_threshold(cov, threshold):
        code = EXIT_FINDINGS
    else:
        code = EXIT_OK
    replays = [f for f in report.files if f.kind is not replay.InputKind.POLICY]
    empty = bool(replays) and sum(f.cases for f in replays) == 0 and not allow_empty
    if empty and code == EXIT_OK:
        code = EXIT_FINDINGS

    if fmt is TestFormat.json:
        sys.stdout.write(rep.render_json(report, table, cov, threshold, code) + "\n")
    elif fmt is TestFormat.junit:
        sys.stdout.write(rep.render_junit(report, table, cov, threshold) + "\n")
    elif fmt is TestFormat.github:
        sys.stdout.write(rep.render_github(report, table, cov, threshold) + "\n")
    else:
        tty = sys.stdout.isatty()
        rep.render_text(
            report, table, Console(highlight=False, width=None if tty else 160), cov, threshold
        )
    if empty:
        err_console().print(
            "[bold red]error:[/] no call was replayed from "
            + ", ".join(escape(f.path) for f in replays)
            + " (empty, or every call filtered out by --run); pass --allow-empty if that is "
            "intended"
        )
    if report.errors and fmt is not TestFormat.github:
        console = err_console()
        for bad in report.errors[:MAX_ERRORS_SHOWN]:
            console.print(f"[bold red]error:[/] {escape(str(bad))}", highlight=False)
        if len(report.errors) > MAX_ERRORS_SHOWN:
            console.print(f"… and {len(report.errors) - MAX_ERRORS_SHOWN} more invalid line(s)")
    sys.stdout.flush()
    raise typer.Exit(code)


def register(policy_app: typer.Typer) -> None:
    policy_app.command("test")(test_cmd)
