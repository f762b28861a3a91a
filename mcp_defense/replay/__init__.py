"""`policy test`: inline tests and replays of recorded traffic against one compiled policy.

`plan` sorts the PATH arguments into policy files, recordings and transcripts; `run` executes
them against a DecisionTable and returns a Report; `replay.report` renders it. The CLI
(`cli/policy_test.py`) and the pytest plugin are thin layers over these.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mcp_defense.policy.table import DecisionTable
from mcp_defense.replay.runner import (
    FileResult,
    InlineResult,
    InputError,
    InputKind,
    Progress,
    ReplayCase,
    ReplayInputError,
    Report,
    Status,
    classify_input,
    policy_file_set,
    replay_recording,
    replay_transcript,
    run_inline,
    select_tests,
)

__all__ = [
    "FileResult",
    "InlineResult",
    "InputError",
    "InputKind",
    "Plan",
    "ReplayCase",
    "ReplayInputError",
    "Report",
    "Status",
    "plan",
    "run",
]


@dataclass
class Plan:
    policies: list[Path] = field(default_factory=list)  # .mcpd files / dirs given as PATH
    recordings: list[Path] = field(default_factory=list)
    transcripts: list[Path] = field(default_factory=list)
    all_tests: bool = False  # no PATH at all: run every inline test of the policy

    @property
    def replay_bytes(self) -> int:
        total = 0
        for p in (*self.recordings, *self.transcripts):
            try:
                total += p.stat().st_size
            except OSError:
                pass
        return total


def plan(paths: Sequence[str]) -> Plan:
    """Classify PATH arguments; raises ReplayInputError for missing or unrecognisable inputs."""
    out = Plan(all_tests=not paths)
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ReplayInputError(f"{raw}: no such file or directory")
        if p.is_dir():
            # A directory holds policies (its .mcpd files) and/or traffic (its .jsonl files),
            # so a policy repository is tested with `policy test policies/ recordings/`.
            traffic = sorted(p.rglob("*.jsonl"))
            if any(p.rglob("*.mcpd")):
                out.policies.append(p)
            elif not traffic:
                raise ReplayInputError(f"{raw}: directory contains no .mcpd or .jsonl files")
            for f in traffic:
                _add(out, f)
        else:
            _add(out, p)
    return out


def _add(out: Plan, p: Path) -> None:
    kind = classify_input(p)
    if kind is InputKind.POLICY:
        out.policies.append(p)
    elif kind is InputKind.RECORDING:
        out.recordings.append(p)
    else:
        out.transcripts.append(p)


def run(
    table: DecisionTable,
    the_plan: Plan,
    *,
    archetype: str = "",
    run_re: re.Pattern[str] | None = None,
    fail_on_change: bool = True,
    keep_passing: bool = False,
    progress: Progress | None = None,
    with_imports: bool = False,
) -> Report:
    """Inline tests of the policy files named (or of the whole policy when none were named),
    then every recording and transcript, in the order given."""
    report = Report(table.version, fail_on_change=fail_on_change, kept_passing=keep_passing)
    files = None if the_plan.all_tests or with_imports else policy_file_set(the_plan.policies)
    if the_plan.all_tests or the_plan.policies:
        run_inline(table, select_tests(table, files, run_re), report)
    done = 0

    def advance(offset: int) -> Progress | None:
        if progress is None:
            return None
        return lambda pos: progress(offset + pos)

    for p in the_plan.recordings:
        replay_recording(
            table, p, report, run=run_re, keep_passing=keep_passing, progress=advance(done)
        )
        done += _size(p)
    for p in the_plan.transcripts:
        replay_transcript(
            table,
            p,
            archetype,
            report,
            run=run_re,
            keep_passing=keep_passing,
            progress=advance(done),
        )
        done += _size(p)
    return report


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0
