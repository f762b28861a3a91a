"""`mcp-defense policy …`: lint, eval, explain, compile, bench (test and watch live beside)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mcp_defense.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    Fmt,
    OutFmt,
    PolicyOpt,
    SetOpt,
    load_or_exit,
    out_console,
    parse_sets,
    print_diagnostics_rich,
    render_diagnostics,
    usage_error,
)
from mcp_defense.policy.evaluate import available_cpus, eval_stream
from mcp_defense.policy.explain import render_explanation
from mcp_defense.protocol.calls import call_from_line

policy_app = typer.Typer(
    help="Write, check and try policies.\n\nExit codes: 0 ok, 1 findings, 2 usage error.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    from mcp_defense.cli import policy_test, policy_watch

    app.add_typer(policy_app, name="policy")
    policy_test.register(policy_app)
    policy_watch.register(policy_app)


# ---------------------------------------------------------------------------------------------
# lint


@policy_app.command()
def lint(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Files or directories (default: the built-in pack).")
    ] = None,
    policy: PolicyOpt = None,
    sets: SetOpt = None,
    fmt: Annotated[
        Fmt,
        typer.Option("--format", "-f", help="text, json, or github (GitHub Actions annotations)."),
    ] = Fmt.text,
) -> None:
    """Check policies: syntax, names, variables, CEL types and cost, dead rules, unused jewels.

    Exit codes: 0 no errors (warnings allowed), 1 errors found, 2 usage error.
    """
    from mcp_defense.policy.loader import check

    result = check([*(paths or []), *(policy or [])] or None, parse_sets(sets))
    diags = result.diagnostics
    if fmt is Fmt.text:
        out = Console(highlight=False)
        print_diagnostics_rich(out, diags)
        n_err = len(result.errors)
        n_warn = len(diags) - n_err
        files = len(result.files)
        status = "[bold red]" if n_err else "[bold green]"
        out.print(
            f"{status}{n_err} error(s)[/], {n_warn} warning(s) in {files} file(s)"
            + (f"; policy version {result.version}" if result.version else "")
        )
    else:
        text = render_diagnostics(diags, fmt.value)
        if text:
            sys.stdout.write(text + "\n")
    raise typer.Exit(EXIT_FINDINGS if result.errors else EXIT_OK)


# ---------------------------------------------------------------------------------------------
# eval


def _open_input(source: str) -> Any:
    if source == "-":
        return sys.stdin.buffer
    try:
        return open(source, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as e:
        raise usage_error(f"cannot read {source}: {e.strerror}") from None


@policy_app.command("eval")
def eval_cmd(
    source: Annotated[str, typer.Argument(help="JSON lines file, or - for stdin.")] = "-",
    archetype: Annotated[
        str,
        typer.Option(
            "--archetype", "-a", help='Archetype for lines without their own "archetype" field.'
        ),
    ] = "",
    policy: PolicyOpt = None,
    sets: SetOpt = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            help="Worker processes for large inputs (output order is kept); 0 = one per CPU.",
        ),
    ] = 0,
) -> None:
    """Decide tool calls read as JSON lines; print exactly one JSON line per input line.

    Each line is a JSON-RPC tools/call request or {"archetype": …, "params": {"name": …,
    "arguments": {…}}}. Output: {"decision", "rule", "reason", "policy_version"} plus "id"
    when the request had one. Unreadable lines get a deny line.

    Exit codes: 0 done (whatever was decided), 2 usage error or unreadable input/policy.
    """
    if jobs < 0:
        raise usage_error("--jobs must be 0 (one per CPU) or more")
    table = load_or_exit(policy, sets)
    stream = _open_input(source)
    try:
        eval_stream(table, stream, archetype, sys.stdout.write, jobs or available_cpus())
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
        sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# explain


def _first_call(source: str) -> bytes:
    stream = _open_input(source)
    try:
        for raw in stream:
            if raw.strip():
                return raw.rstrip(b"\r\n")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    raise usage_error("no tool call on input")


@policy_app.command()
def explain(
    source: Annotated[str, typer.Argument(help="A JSON line (file or - for stdin).")] = "-",
    archetype: Annotated[str, typer.Option("--archetype", "-a")] = "",
    policy: PolicyOpt = None,
    sets: SetOpt = None,
    fmt: Annotated[OutFmt, typer.Option("--format", "-f", help="text or json.")] = OutFmt.text,
) -> None:
    """Show the facts extracted from one call, every rule considered, and why it was decided.

    Exit codes: 0 explained, 2 usage error or unreadable input/policy.
    """
    table = load_or_exit(policy, sets)
    lc = call_from_line(_first_call(source), archetype)
    if lc.call is None:
        raise usage_error(f"cannot read the call: {lc.error}")
    exp = table.explain(lc.call)
    if fmt is OutFmt.json:
        sys.stdout.write(json.dumps(exp.to_dict(), indent=2) + "\n")
    else:
        render_explanation(exp, out_console())


# ---------------------------------------------------------------------------------------------
# compile


@policy_app.command("compile")
def compile_cmd(
    paths: Annotated[list[str] | None, typer.Argument(help="Files or directories.")] = None,
    policy: PolicyOpt = None,
    sets: SetOpt = None,
    fmt: Annotated[OutFmt, typer.Option("--format", "-f", help="text or json.")] = OutFmt.text,
    sandbox: Annotated[
        str | None,
        typer.Option(
            "--sandbox",
            metavar="ARCHETYPE",
            help="Show the Landlock ruleset `stdio --sandbox` applies for ARCHETYPE instead.",
        ),
    ] = None,
    timings: Annotated[
        bool, typer.Option("--timings", help="Also show how long each compiler stage took.")
    ] = False,
) -> None:
    """Compile policies and summarise the decision table (rules per archetype, matchers, version).

    Exit codes: 0 compiled, 2 policy errors or usage error.
    """
    table = load_or_exit([*(paths or []), *(policy or [])] or None, sets)
    if sandbox is not None:
        from mcp_defense.sandbox.plan import describe

        if sandbox not in table.archetypes:
            raise usage_error(f"unknown archetype {sandbox!r}")
        sys.stdout.write(describe(table, sandbox, fmt.value) + "\n")
        return
    summary = dict(table.summary)
    summary["version"] = table.version
    summary["files"] = list(table.files)
    if timings:
        summary["timings_ms"] = [{"stage": n, "ms": round(ms, 3)} for n, ms in table.timings]
    if fmt is OutFmt.json:
        sys.stdout.write(json.dumps(summary, indent=2, default=list) + "\n")
        return
    console = out_console()

    def _names(names: list[str], shown: int = 8) -> str:
        """A terminal line, not thousands of names: `--format json` lists them all."""
        if len(names) <= shown:
            return ", ".join(names) or "-"
        return ", ".join(names[:shown]) + f", … {len(names) - shown:,} more"

    t = Table(title=f"decision table {table.version}", title_justify="left")
    for col in (
        "archetype",
        "tool rules",
        "indexed tools",
        "flow rules",
        "orphan rules",
        "folded away",
    ):
        t.add_column(col)
    for name, a in sorted(summary["archetypes"].items()):
        t.add_row(
            name,
            str(a["rules"]),
            str(len(a["indexed_tools"])),
            str(a["flow_rules"]),
            str(a["orphan_rules"]),
            _names(a["dropped"]),
        )
    console.print(t)
    console.print(
        f"{summary['rules']} rules · {summary['jewel_globs']} jewel globs in "
        f"3 matchers · {summary['classify']['tools']} tool classifiers · "
        f"{summary['classify']['keys']} argument keys · {summary['tests']} inline "
        f"tests · default {summary['default']} · join "
        f"{'/'.join(summary['join']['keys'])} within {summary['join']['window_s']}s"
    )
    console.print(f"[dim]{len(table.files)} files: " + ", ".join(table.files) + "[/]")
    if timings:
        st = Table(title="compiler stages", title_justify="left")
        st.add_column("stage")
        st.add_column("ms", justify="right")
        for n, ms in table.timings:
            st.add_row(n, f"{ms:.2f}")
        st.add_row("[bold]total[/]", f"[bold]{sum(ms for _, ms in table.timings):.2f}[/]")
        console.print(st)


# ---------------------------------------------------------------------------------------------
# bench


DECIDE_TARGET_US = 7.0  # per decision, median (issue targets; shown next to the figures)
EVAL_TARGET_PER_S = 50_000  # `policy eval` calls per second in one process


def _target(met: bool, text: str) -> str:
    """A target next to its figure: a missed one is marked, never just printed beside it."""
    return f"({text}: met)" if met else f"[bold red]({text}: MISSED)[/]"


@policy_app.command()
def bench(
    policy: PolicyOpt = None,
    sets: SetOpt = None,
    n: Annotated[int, typer.Option("--n", help="Decisions per measurement.")] = 20000,
    lines: Annotated[
        int, typer.Option("--lines", help="Lines for the eval throughput run.")
    ] = 100_000,
    fmt: Annotated[OutFmt, typer.Option("--format", "-f", help="text or json.")] = OutFmt.text,
) -> None:
    """Measure decision latency (median µs per decide, best of 5 interleaved rounds) and
    `policy eval` throughput.

    Exit codes: 0 measured, 2 usage error.
    """
    from mcp_defense.policy.bench import run_bench

    if n < 100 or lines < 100:
        raise usage_error("--n and --lines must be at least 100")
    given = list(sets or [])
    if not any(x.startswith("workspace=") for x in given):
        given.append("workspace=/workspace")  # the demo calls use /workspace
    table = load_or_exit(policy, given)
    results = run_bench(table, n=n, lines=lines, progress=sys.stderr.isatty())
    if fmt is OutFmt.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        return
    console = out_console()
    t = Table(title=f"policy bench (table {table.version})", title_justify="left")
    slow = DECIDE_TARGET_US
    t.add_column("case")
    t.add_column("decision")
    t.add_column("median µs (best round)", justify="right")
    t.add_column("p95 µs", justify="right")
    for case in results["cases"]:
        median = f"{case['median_us']:.2f}"
        if case["median_us"] > slow:
            median = f"[bold red]{median} MISSED[/]"
        t.add_row(case["name"], case["decision"], median, f"{case['p95_us']:.2f}")
    console.print(t)
    console.print(
        f"all cases: median [bold]{results['median_us']:.2f} µs[/] per decision "
        + _target(results["median_us"] <= slow, f"target ≤ {slow:g} µs")
    )
    console.print(
        f"policy eval: [bold]{results['eval_calls_per_s']:,.0f} calls/s[/] in one "
        f"process over {results['eval_lines']:,} lines "
        + _target(results["eval_calls_per_s"] >= EVAL_TARGET_PER_S, "target ≥ 50,000")
    )
    if results["eval_parallel_calls_per_s"]:
        console.print(
            f"policy eval --jobs {results['eval_jobs']}: [bold]"
            f"{results['eval_parallel_calls_per_s']:,.0f} calls/s[/]"
        )
