"""Reporters for `policy test`: text (rich), JSON, JUnit XML and GitHub Actions annotations.

Every reporter is a pure function of the Report and the table, with no timings and no
absolute paths beyond what the user passed, so CI logs and snapshot tests are stable.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from mcp_defense.policy.facts import Decision, ToolCall
from mcp_defense.policy.table import DecisionTable
from mcp_defense.replay.coverage import Coverage
from mcp_defense.replay.runner import (
    FileResult,
    InlineResult,
    ReplayCase,
    Report,
    Status,
    key_argument,
    rule_sources,
    split_source,
)
from mcp_defense.resources import BUILTIN_PREFIX

GROUP_ROWS = 20  # calls listed per diff group in text; JSON lists every one
GROUP_TRACES = 1  # explain trees per diff group in text (the first call of the group)


def outcome(decision: str | None, rule: str | None) -> str:
    """'deny by crown_jewel', 'allow (default)', or '-' when nothing was recorded."""
    if decision is None:
        return "-"
    return f"{decision} by {rule}" if rule else f"{decision} (default)"


def decision_text(d: Decision) -> str:
    return outcome(d.action.value, d.rule)


def explanation_text(table: DecisionTable, call: ToolCall, width: int = 160) -> str:
    """The `policy explain` tree as plain text (JUnit bodies, pytest failures)."""
    from mcp_defense.policy.explain import render_explanation

    buf = io.StringIO()
    console = Console(
        file=buf, width=width, color_system=None, highlight=False, force_terminal=False
    )
    render_explanation(table.explain(call), console)
    return buf.getvalue().rstrip("\n")


def _rule_loc(sources: dict[str, tuple[str, str]], rule: str | None) -> str:
    if not rule:
        return ""
    found = sources.get(rule)
    if found is None:
        return "(not in this policy)"
    file, line, _ = split_source(found[1])
    return f"{file}:{line}"


def _groups(cases: Sequence[ReplayCase]) -> list[tuple[tuple[Any, ...], list[ReplayCase]]]:
    """Cases grouped by (old → new) decision and rule, largest group first."""
    acc: dict[tuple[Any, ...], list[ReplayCase]] = {}
    for c in cases:
        old_rule = c.recorded_rule if c.expect is None else None
        key = (c.expectation, old_rule, c.decision.action.value, c.decision.rule)
        acc.setdefault(key, []).append(c)
    return sorted(acc.items(), key=lambda kv: (-len(kv[1]), tuple(str(x) for x in kv[0])))


def _notes(f: FileResult) -> str:
    parts = []
    if f.rule_changed:
        parts.append(f"{f.rule_changed} by another rule")
    if f.unchecked:
        parts.append(f"{f.unchecked} without expectation")
    if f.skipped:
        parts.append(f"{f.skipped} skipped")
    if f.refused:
        parts.append(f"{f.refused} refused before policy")
    if f.errors:
        parts.append(f"{f.errors} invalid")
    parts.extend(f.warnings)
    return ", ".join(parts)


def verdict(report: Report, coverage: Coverage | None, threshold: float | None) -> str:
    """One line: what failed, or that nothing did."""
    bad = []
    if report.errors:
        bad.append(f"{len(report.errors)} invalid input line(s)")
    if report.inline_failed:
        bad.append(f"{len(report.inline_failed)} inline test(s) failed")
    failed = len(report.by_status(Status.FAIL))
    if failed:
        bad.append(f"{failed} call(s) not decided as expected")
    changed = sum(f.changed for f in report.files)
    if changed and report.fail_on_change:
        bad.append(f"{changed} decision(s) changed")
    if below_threshold(coverage, threshold):
        assert coverage is not None and threshold is not None
        bad.append(f"coverage {coverage.percent:.1f}% below {threshold:g}%")
    if bad:
        return "FAILED: " + ", ".join(bad)
    n_inline = len(report.inline)
    calls = sum(f.cases for f in report.files) - n_inline
    tail = f" ({changed} changed decision(s) not failing: --no-fail-on-change)" if changed else ""
    return f"ok: {n_inline} inline test(s) passed, {calls} call(s) replayed{tail}"


def below_threshold(coverage: Coverage | None, threshold: float | None) -> bool:
    return coverage is not None and threshold is not None and coverage.percent < threshold


# ---------------------------------------------------------------------------------------------
# text


def render_text(
    report: Report,
    table: DecisionTable,
    console: Console,
    coverage: Coverage | None = None,
    threshold: float | None = None,
) -> None:
    sources = rule_sources(table)
    failed_inline = report.inline_failed
    if failed_inline:
        console.print(f"[bold red]Inline tests failed: {len(failed_inline)}[/]")
        for r in failed_inline:
            console.print(
                f"  [red]✗[/] [bold]{esc(r.test.name)}[/]  [dim]{esc(r.file)}:{r.line}[/]"
            )
            console.print(
                esc(
                    f"    expected {r.expected_text()}, got "
                    f"{decision_text(r.decision)}"
                    + (f": {r.decision.reason}" if r.decision.reason else "")
                )
            )
            _trace(console, table, r.call())
        console.print()
    for status, title, style in (
        (Status.FAIL, "Calls not decided as expected (`expect`)", "bold red"),
        (
            Status.CHANGED,
            "Changed decisions",
            "bold red" if report.fail_on_change else "bold yellow",
        ),
        (Status.RULE_CHANGED, "Same decision, another rule (not a failure)", "bold"),
    ):
        cases = report.by_status(status)
        if cases:
            _diff(
                console,
                table,
                sources,
                title,
                style,
                cases,
                traces=status is not Status.RULE_CHANGED,
            )
    unchecked = [
        c for c in report.by_status(Status.UNCHECKED) if c.decision.action.value != "allow"
    ]
    if unchecked:
        _diff(
            console,
            table,
            sources,
            "Transcript calls the policy would not simply allow (no expectation)",
            "bold",
            unchecked,
            traces=False,
        )
    _summary(console, report)
    if coverage is not None:
        render_coverage(console, coverage, threshold)
    line = verdict(report, coverage, threshold)
    style = "bold red" if line.startswith("FAILED") else "bold green"
    console.print(f"[{style}]{esc(line)}[/]  [dim]policy version {report.policy_version}[/]")


def _trace(console: Console, table: DecisionTable, call: ToolCall) -> None:
    from mcp_defense.policy.explain import render_explanation

    with console.capture() as cap:
        render_explanation(table.explain(call), console)
    for ln in cap.get().rstrip("\n").splitlines():
        console.out("      " + ln, highlight=False)


def _diff(
    console: Console,
    table: DecisionTable,
    sources: dict[str, tuple[str, str]],
    title: str,
    style: str,
    cases: Sequence[ReplayCase],
    *,
    traces: bool,
) -> None:
    console.print(f"[{style}]{title}: {len(cases)} call(s)[/]")
    for (old, old_rule, new, new_rule), group in _groups(cases):
        loc = _rule_loc(sources, new_rule or old_rule)
        head = f"{outcome(old, old_rule)} → {outcome(new, new_rule)}"
        if group[0].expect is not None:
            head = f"expected {old} → got {outcome(new, new_rule)}"
        elif group[0].recorded is None:
            head = outcome(new, new_rule)
        console.print(
            f"  [bold]{esc(head)}[/]"
            + (f"  [dim]{esc(loc)}[/]" if loc else "")
            + f"  ({len(group)} call(s))"
        )
        rows = [(c.location, c.tool, key_argument(table, c.call)) for c in group[:GROUP_ROWS]]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        for loc_, tool, arg in rows:
            console.out(f"    {loc_:<{w0}}  {tool:<{w1}}  {arg}".rstrip(), highlight=False)
        if len(group) > GROUP_ROWS:
            console.print(
                f"    … {len(group) - GROUP_ROWS} more (--format json lists all)", highlight=False
            )
        if traces:
            for c in group[:GROUP_TRACES]:
                console.print(f"    [dim]trace of {esc(c.location)}: {esc(c.decision.reason)}[/]")
                _trace(console, table, c.call)
    console.print()


def _summary(console: Console, report: Report) -> None:
    t = Table(title="policy test", title_justify="left")
    for col, justify in (
        ("input", "left"),
        ("kind", "left"),
        ("cases", "right"),
        ("passed", "right"),
        ("failed", "right"),
        ("changed", "right"),
        ("notes", "left"),
    ):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for f in report.files:
        kind = "inline tests" if f.kind.value == "policy" else f.kind.value
        t.add_row(
            esc(f.path), kind, str(f.cases), str(f.passed), str(f.failed), str(f.changed), _notes(f)
        )
    if len(report.files) > 1:
        t.add_section()
        tot = FileResult("total", report.files[0].kind)
        for f in report.files:
            for fld in fields(FileResult):
                if fld.type == "int":
                    setattr(tot, fld.name, getattr(tot, fld.name) + getattr(f, fld.name))
        t.add_row(
            "[bold]total[/]",
            "",
            str(tot.cases),
            str(tot.passed),
            str(tot.failed),
            str(tot.changed),
            _notes(tot),
        )
    if report.files:
        console.print(t)
    else:
        console.print("[yellow]nothing to test: no inline tests and no recorded calls[/]")


def render_coverage(console: Console, cov: Coverage, threshold: float | None) -> None:
    t = Table(
        title=f"rule coverage: {cov.covered}/{cov.total} rules fired ({cov.percent:.1f}%)",
        title_justify="left",
    )
    t.add_column("rule")
    t.add_column("source")
    t.add_column("hits", justify="right")
    for r in cov.rules:
        t.add_row(esc(r.name), esc(r.location), str(r.hits) if r.hits else "[red]0[/]")
    for name, n in cov.engine.items():
        t.add_row(f"[dim]{name}[/]", "[dim](engine)[/]", str(n))
    console.print(t)
    for file, covered, total in cov.per_file():
        console.print(f"  {esc(file)}: {covered}/{total}")
    never = cov.never_fired
    if never:
        style = "bold red" if threshold is not None and cov.percent < threshold else "bold yellow"
        console.print(f"[{style}]never fired ({len(never)}):[/]")
        for r in never:
            console.print(f"  {esc(r.location)}: {esc(r.name)}")
    if cov.other:
        console.print(
            f"[dim]not counted: {len(cov.other)} flow/orphan rule(s) "
            "(policy test decides tool calls only): "
            + esc(", ".join(r.name for r in cov.other))
            + "[/]"
        )
    console.print()


# ---------------------------------------------------------------------------------------------
# JSON


def _inline_dict(table: DecisionTable, r: InlineResult) -> dict[str, Any]:
    file, line, col = split_source(r.test.source)
    d: dict[str, Any] = {
        "name": r.test.name,
        "file": file,
        "line": line,
        "column": col,
        "archetype": r.test.archetype,
        "tool": r.test.tool,
        "arguments": r.test.arguments,
        "expect": r.test.expect,
        "expect_rule": r.test.expect_rule,
        **r.decision.to_dict(),
        "passed": r.passed,
    }
    if not r.passed:
        d["trace"] = table.explain(r.call()).to_dict()
    return d


def _case_dict(table: DecisionTable, c: ReplayCase) -> dict[str, Any]:
    d: dict[str, Any] = {
        "file": c.file,
        "line": c.line,
        "status": c.status.value,
        "archetype": c.call.archetype,
        "tool": c.tool,
        "key_argument": key_argument(table, c.call, limit=1000),
        "arguments": c.call.arguments,
        "agent_id": c.call.agent_id,
        "expect": c.expect,
        "recorded": c.recorded,
        "recorded_rule": c.recorded_rule,
        **c.decision.to_dict(),
    }
    if c.status in (Status.FAIL, Status.CHANGED):
        d["trace"] = table.explain(c.call).to_dict()
    return d


def render_json(
    report: Report,
    table: DecisionTable,
    coverage: Coverage | None = None,
    threshold: float | None = None,
    exit_code: int = 0,
) -> str:
    files = [{**asdict(f), "kind": f.kind.value} for f in report.files]
    out: dict[str, Any] = {
        "policy_version": report.policy_version,
        "ok": exit_code == 0,
        "exit_code": exit_code,
        "verdict": verdict(report, coverage, threshold),
        "fail_on_change": report.fail_on_change,
        "files": files,
        "inline": [_inline_dict(table, r) for r in report.inline],
        "cases": [_case_dict(table, c) for c in report.cases],
        "errors": [{"file": e.file, "line": e.line, "message": e.message} for e in report.errors],
    }
    if coverage is not None:
        out["coverage"] = coverage.to_dict()
        out["coverage"]["threshold"] = threshold
    return json.dumps(out, indent=2, ensure_ascii=False, default=str)


# ---------------------------------------------------------------------------------------------
# JUnit XML


def render_junit(
    report: Report,
    table: DecisionTable,
    coverage: Coverage | None = None,
    threshold: float | None = None,
) -> str:
    """One <testsuite> per input; every inline test and replayed call is a <testcase>."""
    root = ET.Element("testsuites", name="mcp-defense policy test")
    suites: dict[str, ET.Element] = {}
    counts: dict[str, list[int]] = {}  # suite → [tests, failures, errors]

    def suite(name: str) -> ET.Element:
        s = suites.get(name)
        if s is None:
            s = suites[name] = ET.SubElement(root, "testsuite", name=name)
            props = ET.SubElement(s, "properties")
            ET.SubElement(props, "property", name="policy_version", value=report.policy_version)
            counts[name] = [0, 0, 0]
        return s

    for f in report.files:
        suite(f.path)
    for r in report.inline:
        file, line, _ = split_source(r.test.source)
        tc = ET.SubElement(
            suite(file), "testcase", classname=file, name=r.test.name, file=file, line=str(line)
        )
        counts[file][0] += 1
        if not r.passed:
            counts[file][1] += 1
            msg = f"expected {r.expected_text()}, got {decision_text(r.decision)}"
            fail = ET.SubElement(tc, "failure", message=msg, type="decision")
            fail.text = (
                f"{r.decision.reason}\n\n" if r.decision.reason else ""
            ) + explanation_text(table, r.call())
    for c in report.cases:
        tc = ET.SubElement(
            suite(c.file),
            "testcase",
            classname=c.file,
            name=f"{c.location} {c.tool} {key_argument(table, c.call)}".rstrip(),
            file=c.file,
            line=str(c.line),
        )
        counts[c.file][0] += 1
        new = decision_text(c.decision)
        failing = c.status is Status.FAIL or (c.status is Status.CHANGED and report.fail_on_change)
        if failing:
            counts[c.file][1] += 1
            msg = (
                f"expected {c.expect}, got {new}"
                if c.status is Status.FAIL
                else f"decision changed: {outcome(c.recorded, c.recorded_rule)} → {new}"
            )
            fail = ET.SubElement(tc, "failure", message=msg, type=c.status.value)
            fail.text = f"{c.decision.reason}\n\n{explanation_text(table, c.call)}"
        elif c.status is not Status.PASS:
            out = ET.SubElement(tc, "system-out")
            out.text = (
                f"{c.status.value}: {outcome(c.recorded, c.recorded_rule)} → {new}: "
                f"{c.decision.reason}"
            )
    for e in report.errors:
        tc = ET.SubElement(
            suite(e.file),
            "testcase",
            classname=e.file,
            name=f"{e.file}:{e.line}",
            file=e.file,
            line=str(e.line),
        )
        counts[e.file][0] += 1
        counts[e.file][2] += 1
        ET.SubElement(tc, "error", message=e.message, type="input")
    if coverage is not None and threshold is not None:
        s = suite("coverage")
        tc = ET.SubElement(s, "testcase", classname="coverage", name=f"threshold {threshold:g}%")
        counts["coverage"][0] += 1
        if coverage.percent < threshold:
            counts["coverage"][1] += 1
            fail = ET.SubElement(
                tc,
                "failure",
                type="coverage",
                message=f"coverage {coverage.percent:.1f}% below {threshold:g}%",
            )
            fail.text = "never fired:\n" + "\n".join(
                f"{r.location}: {r.name}" for r in coverage.never_fired
            )
    tot = [0, 0, 0]
    for name, s in suites.items():
        n, fl, er = counts[name]
        s.set("tests", str(n))
        s.set("failures", str(fl))
        s.set("errors", str(er))
        s.set("skipped", "0")
        tot = [tot[0] + n, tot[1] + fl, tot[2] + er]
    root.set("tests", str(tot[0]))
    root.set("failures", str(tot[1]))
    root.set("errors", str(tot[2]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


# ---------------------------------------------------------------------------------------------
# GitHub Actions


def _gh(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(s: str) -> str:
    return _gh(s).replace(":", "%3A").replace(",", "%2C")


def _annotation(level: str, file: str, line: int, title: str, message: str) -> str:
    if file.startswith(BUILTIN_PREFIX):  # not a file of the repository: say where in the text
        message = f"{file}:{line}: {message}"
        file = ""
    where = f"file={_gh_prop(file)},line={line}," if file and line else ""
    return f"::{level} {where}title={_gh_prop(title)}::{_gh(message)}"


def render_github(
    report: Report,
    table: DecisionTable,
    coverage: Coverage | None = None,
    threshold: float | None = None,
) -> str:
    """Workflow commands: each failure annotates its .mcpd test or recording line in the PR."""
    out: list[str] = []
    for e in report.errors:
        out.append(_annotation("error", e.file, e.line, "mcpd invalid input", e.message))
    for r in report.inline_failed:
        file, line, _ = split_source(r.test.source)
        out.append(
            _annotation(
                "error",
                file,
                line,
                f"mcpd test failed: {r.test.name}",
                f"expected {r.expected_text()}, got {decision_text(r.decision)}: {r.decision.reason}",
            )
        )
    for c in report.cases:
        new = decision_text(c.decision)
        arg = key_argument(table, c.call)
        what = f"{c.tool} {arg}".rstrip()
        if c.status is Status.FAIL:
            out.append(
                _annotation(
                    "error",
                    c.file,
                    c.line,
                    "mcpd expectation not met",
                    f"{what}: expected {c.expect}, got {new}: {c.decision.reason}",
                )
            )
        elif c.status is Status.CHANGED:
            out.append(
                _annotation(
                    "error" if report.fail_on_change else "warning",
                    c.file,
                    c.line,
                    "mcpd decision changed",
                    f"{what}: {outcome(c.recorded, c.recorded_rule)} → {new}: {c.decision.reason}",
                )
            )
        elif c.status is Status.RULE_CHANGED:
            out.append(
                _annotation(
                    "notice",
                    c.file,
                    c.line,
                    "mcpd deciding rule changed",
                    f"{what}: {outcome(c.recorded, c.recorded_rule)} → {new}",
                )
            )
    if coverage is not None:
        below = below_threshold(coverage, threshold)
        for hits in coverage.never_fired:
            file, line, _ = split_source(hits.source)
            out.append(
                _annotation(
                    "error" if below else "notice",
                    file,
                    line,
                    "mcpd rule never fired",
                    f"rule {hits.name} decided no test case or recorded call",
                )
            )
        if below:
            assert threshold is not None
            out.append(
                _annotation(
                    "error",
                    "",
                    0,
                    "mcpd coverage",
                    f"rule coverage {coverage.percent:.1f}% is below {threshold:g}%",
                )
            )
    out.append(verdict(report, coverage, threshold) + f" (policy version {report.policy_version})")
    return "\n".join(out)
