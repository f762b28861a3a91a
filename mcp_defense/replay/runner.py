"""Run inline tests and replay recorded traffic against one DecisionTable (`policy test`).

Replay calls `DecisionTable.decide` with the same ToolCall the stdio proxy builds, so a call
decided live and replayed under the same policy gets the same decision, rule and reason. The
replay loop is the hot path of CI runs over weeks of traffic: one JSON parse per line, a
hand-rolled check of the fields `event_from_dict` would check for `tool_call` lines (falling
back to it only to word the error), then `decide`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mcp_defense.events.model import EventFormatError, event_from_dict
from mcp_defense.policy.facts import Action, Decision, ResultFacts, ToolCall
from mcp_defense.policy.table import DecisionTable, InlineTest
from mcp_defense.resources import BUILTIN_PREFIX, builtin_policy_dir

ACTIONS = frozenset(a.value for a in Action)
# What the table says while an archetype is learning (table.py `_rule_decision`): the recorded
# `alert` stands for the action enforcement would have taken, which is what replay computes.
_LEARNING = re.compile(r"^learning until \S+, would ([a-z_]+): ")


class InputKind(StrEnum):
    POLICY = "policy"
    RECORDING = "recording"
    TRANSCRIPT = "transcript"


class ReplayInputError(Exception):
    """An input that cannot be read at all (missing, unreadable, of unknown kind): exit 2."""


@dataclass(frozen=True, slots=True)
class InputError:
    """A line that is not valid input; reported as file:line and turns the exit code to 2."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"  # the decision differs from a reviewer's `expect` (or an inline test's)
    CHANGED = "changed"  # the decision differs from the recorded one
    RULE_CHANGED = "rule_changed"  # same decision, another rule decided it (informational)
    UNCHECKED = "unchecked"  # transcript call with no expectation: decided, nothing to compare


@dataclass(slots=True)
class InlineResult:
    test: InlineTest
    decision: Decision
    passed: bool

    @property
    def file(self) -> str:
        return split_source(self.test.source)[0]

    @property
    def line(self) -> int:
        return split_source(self.test.source)[1]

    def call(self) -> ToolCall:
        return inline_call(self.test)

    def expected_text(self) -> str:
        t = self.test
        return t.expect + (f" by {t.expect_rule}" if t.expect_rule else "")


@dataclass(slots=True)
class ReplayCase:
    """One recorded (or transcribed) tools/call and what the policy under test decides now."""

    file: str
    line: int
    call: ToolCall
    decision: Decision
    status: Status
    expect: str | None  # the reviewer's `expect`, when the line has one
    recorded: str | None  # the recorded decision (None for transcripts)
    recorded_rule: str | None

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def expectation(self) -> str | None:
        return self.expect if self.expect is not None else self.recorded

    @property
    def tool(self) -> str:
        t = self.call.tool
        return t if type(t) is str else json.dumps(t)


@dataclass(slots=True)
class FileResult:
    """Per-input counts for the summary table (inline tests count under their .mcpd file)."""

    path: str
    kind: InputKind
    cases: int = 0
    passed: int = 0
    failed: int = 0
    changed: int = 0
    rule_changed: int = 0
    unchecked: int = 0
    skipped: int = 0  # lines that are valid but not tool calls (other events, initialize, …)
    refused: int = 0  # transcript messages the proxy refuses before policy
    errors: int = 0
    # The recording ran under other policy variables or another policy version: decisions
    # may differ for that reason alone (shown in the summary's notes).
    warnings: list[str] = field(default_factory=list)
    recorded_versions: list[str] = field(default_factory=list)  # policy versions recorded


@dataclass
class Report:
    policy_version: str
    files: list[FileResult] = field(default_factory=list)
    inline: list[InlineResult] = field(default_factory=list)
    cases: list[ReplayCase] = field(default_factory=list)  # non-passing (all when kept)
    hits: dict[str, int] = field(default_factory=dict)  # deciding rule name → count
    errors: list[InputError] = field(default_factory=list)
    fail_on_change: bool = True
    kept_passing: bool = False  # `cases` holds passing cases too (JUnit lists every case)

    @property
    def inline_failed(self) -> list[InlineResult]:
        return [r for r in self.inline if not r.passed]

    def by_status(self, status: Status) -> list[ReplayCase]:
        return [c for c in self.cases if c.status is status]

    @property
    def failed(self) -> bool:
        """Whether the run fails (exit 1), input errors aside."""
        if self.inline_failed or any(f.failed for f in self.files):
            return True
        return self.fail_on_change and any(f.changed for f in self.files)


# ---------------------------------------------------------------------------------------------
# Inputs


def split_source(source: str) -> tuple[str, int, int]:
    """'file:line:col' → (file, line, col); file names may themselves contain ':'."""
    parts = source.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0], int(parts[1]), int(parts[2])
    return source, 0, 0


def display_path(p: Path) -> str:
    """How an input is named in reports: relative to cwd when under it (as the loader does)."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def classify_input(path: Path) -> InputKind:
    """`.mcpd` or a directory → policy; JSONL by its first non-empty line: `type` → recording,
    `jsonrpc`/`method` → transcript. Raises ReplayInputError when it cannot tell."""
    if path.is_dir() or path.suffix == ".mcpd":
        return InputKind.POLICY
    try:
        with path.open("rb") as fh:
            for n, raw in enumerate(fh, 1):
                if raw.strip():
                    try:
                        first = json.loads(raw)
                    except (ValueError, RecursionError) as e:
                        raise ReplayInputError(
                            f"{display_path(path)}:{n}: not JSON ({_short_err(e)}); expected a "
                            "recording (--record) or a JSON-RPC transcript, one object per line"
                        ) from None
                    items = first if type(first) is list and first else [first]
                    head = items[0]
                    if isinstance(head, dict) and "type" in head:
                        return InputKind.RECORDING
                    if isinstance(head, dict) and ("jsonrpc" in head or "method" in head):
                        return InputKind.TRANSCRIPT
                    raise ReplayInputError(
                        f'{display_path(path)}:{n}: neither a recording event (no "type") '
                        'nor a JSON-RPC message (no "jsonrpc")'
                    )
    except OSError as e:
        raise ReplayInputError(f"cannot read {display_path(path)}: {e.strerror or e}") from None
    return InputKind.RECORDING  # empty file: a recording of nothing


def _short_err(e: BaseException) -> str:
    if isinstance(e, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {e.start}"
    if isinstance(e, RecursionError):
        return "JSON nested too deeply"
    return str(e)


def inline_call(t: InlineTest) -> ToolCall:
    return ToolCall(
        archetype=t.archetype, tool=t.tool, arguments=t.arguments, agent_id=t.agent or ""
    )


def policy_file_set(paths: Iterable[Path]) -> set[Path]:
    """Resolved .mcpd files named by PATH arguments (directories expanded, as the loader does)."""
    out: set[Path] = set()
    for p in paths:
        if p.is_dir():
            out.update(x.resolve() for x in p.rglob("*.mcpd"))
        else:
            out.add(p.resolve())
    return out


def _source_path(file: str) -> Path:
    if file.startswith(BUILTIN_PREFIX):
        return (builtin_policy_dir() / file[len(BUILTIN_PREFIX) :]).resolve()
    return Path(file).resolve()


def select_tests(
    table: DecisionTable, files: set[Path] | None, run: re.Pattern[str] | None
) -> list[InlineTest]:
    """Inline tests defined in `files` (None: every test the policy has), filtered by --run."""
    out = []
    for t in table.tests:
        if files is not None and _source_path(split_source(t.source)[0]) not in files:
            continue
        if run is not None and not run.search(t.name):
            continue
        out.append(t)
    return out


# ---------------------------------------------------------------------------------------------
# Running


def run_inline(table: DecisionTable, tests: Sequence[InlineTest], report: Report) -> None:
    """An inline test passes when the decision matches, and the deciding rule when it names one."""
    per_file: dict[str, FileResult] = {}
    for t in tests:
        d = table.decide(inline_call(t))
        ok = d.action.value == t.expect and (t.expect_rule is None or d.rule == t.expect_rule)
        report.inline.append(InlineResult(t, d, ok))
        report.hits[d.rule] = report.hits.get(d.rule, 0) + 1
        file = split_source(t.source)[0]
        fr = per_file.get(file)
        if fr is None:
            fr = per_file[file] = FileResult(file, InputKind.POLICY)
            report.files.append(fr)
        fr.cases += 1
        if ok:
            fr.passed += 1
        else:
            fr.failed += 1


Progress = Callable[[int], None]  # called with bytes read so far, every few thousand lines


def _count(fr: FileResult, case: ReplayCase) -> None:
    fr.cases += 1
    st = case.status
    if st is Status.PASS:
        fr.passed += 1
    elif st is Status.FAIL:
        fr.failed += 1
    elif st is Status.CHANGED:
        fr.changed += 1
    elif st is Status.RULE_CHANGED:
        fr.rule_changed += 1
    else:
        fr.unchecked += 1


_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner


def _decode_line(raw: bytes) -> Any:
    """`json.loads(raw)` for one line at about twice the speed: no encoding sniffing and no
    whitespace regexes for the usual one-object line; anything unusual takes json.loads' own
    path (same result, same errors)."""
    try:
        s = raw.decode("utf-8")
        obj, end = _scan_once(s, 0)
    except (StopIteration, UnicodeDecodeError):
        return json.loads(raw)
    if end == len(s) or s[end:].isspace():
        return obj
    return json.loads(raw)  # trailing data: let json word the error


def _tool_result_ok(d: dict[str, Any]) -> bool:
    """Exactly what event_from_dict checks for a tool_result (half of a recording's lines)."""
    return type(d.get("correlation_id")) is str and type(d.get("ts", "")) is str


_ACTION_OF = {a.value: a for a in Action}


def _response_ok(d: dict[str, Any]) -> bool:
    return (
        type(d.get("correlation_id")) is str
        and type(d.get("tool")) is str
        and d.get("decision") in _ACTION_OF
        and type(d.get("rule")) is str
        and type(d.get("secrets", [])) is list
    )


def _replay_response(
    table: DecisionTable,
    d: dict[str, Any],
    call: ToolCall,
    fr: FileResult,
    report: Report,
    lineno: int,
    keep_passing: bool,
) -> int:
    """Decide a recorded result again with the response rules under test, from what was
    recorded of it (the kinds of secrets, error-ness, size: never its text). 1 if it passed."""
    facts = ResultFacts(
        "",
        tuple(str(s) for s in d.get("secrets", [])),
        bool(d.get("is_error")),
        int(d.get("size") or 0),
    )
    dec = table.decide_response(call, facts)
    report.hits[dec.rule] = report.hits.get(dec.rule, 0) + 1
    recorded = _ACTION_OF[d["decision"]]
    if dec.action is not recorded:
        status = Status.CHANGED
    elif dec.rule != d["rule"]:
        status = Status.RULE_CHANGED
    else:
        if keep_passing:
            report.cases.append(
                ReplayCase(fr.path, lineno, call, dec, Status.PASS, None, d["decision"], d["rule"])
            )
        return 1
    case = ReplayCase(fr.path, lineno, call, dec, status, None, d["decision"], d["rule"])
    _count(fr, case)
    report.cases.append(case)
    return 0


def _numbered_lines(
    path: Path, name: str, progress: Progress | None
) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of an input file, reporting progress by bytes read."""
    try:
        fh = path.open("rb")
    except OSError as e:
        raise ReplayInputError(f"cannot read {name}: {e.strerror or e}") from None
    pos = 0
    with fh:
        for lineno, raw in enumerate(fh, 1):
            if progress is not None:
                pos += len(raw)
                if not lineno & 0xFFF:
                    progress(pos)
            yield lineno, raw
    if progress is not None:
        progress(pos)


def replay_recording(
    table: DecisionTable,
    path: Path,
    report: Report,
    *,
    run: re.Pattern[str] | None = None,
    keep_passing: bool = False,
    progress: Progress | None = None,
) -> FileResult:
    """Decide every `tool_call` line again; other valid events are skipped, invalid lines are
    errors with file:line."""
    name = display_path(path)
    fr = FileResult(name, InputKind.RECORDING)
    report.files.append(fr)
    decide = table.decide
    hits = report.hits
    cases = report.cases
    errors = report.errors
    decode = _decode_line
    action_of = _ACTION_OF
    new_call = ToolCall
    passed = 0
    calls: dict[str, ToolCall] = {}  # correlation id → the call, for its tool_response
    for lineno, raw in _numbered_lines(path, name, progress):
        try:
            d = decode(raw)
        except (ValueError, RecursionError) as e:
            if not raw.strip():
                continue
            errors.append(InputError(name, lineno, f"not JSON: {_short_err(e)}"))
            fr.errors += 1
            continue
        etype = d.get("type") if type(d) is dict else None
        if etype == "tool_response" and _response_ok(d) and d["correlation_id"] in calls:
            if run is None or run.search(f"{name}:{lineno} {d['tool']}"):
                passed += _replay_response(
                    table, d, calls[d["correlation_id"]], fr, report, lineno, keep_passing
                )
            continue
        if etype != "tool_call":
            if etype == "tool_result" and _tool_result_ok(d):
                fr.skipped += 1
                continue
            if etype == "session_start" and type(d) is dict:
                _compare_session(fr, lineno, d, table)
            try:
                event_from_dict(d)
            except (EventFormatError, TypeError, ValueError) as e:
                errors.append(InputError(name, lineno, str(e)))
                fr.errors += 1
            else:
                fr.skipped += 1
            continue
        # Fast path: exactly the checks event_from_dict makes for a tool_call.
        try:
            arch = d["archetype"]
            tool = d["tool"]
            args = d["arguments"]
            rec = d["decision"]
            rule = d["rule"]
            reason = d["reason"]
            agent = d["agent_id"]
            corr = d["correlation_id"]
            session = d.get("session_id", "")
            expect = d.get("expect")
            recorded = action_of.get(rec)
            ok = (
                recorded is not None
                and type(arch) is str
                and type(tool) is str
                and type(rule) is str
                and type(reason) is str
                and type(agent) is str
                and type(corr) is str
                and type(d["policy_version"]) is str
                and type(session) is str
                and type(d.get("ts", "")) is str
                and (expect is None or expect in action_of)
            )
        except (KeyError, TypeError):  # TypeError: an unhashable `decision`
            ok = False
        if not ok:
            try:
                event_from_dict(d)
                msg = "tool_call: invalid field types"  # pragma: no cover - kept in sync
            except EventFormatError as e:
                msg = str(e)
            except (TypeError, ValueError) as e:  # e.g. an unhashable `expect`
                msg = f"tool_call: invalid field: {e}"
            errors.append(InputError(name, lineno, msg))
            fr.errors += 1
            continue
        if run is not None and not run.search(f"{name}:{lineno} {tool}"):
            continue
        # The server's tool hints, description and pin status, as the live call had them.
        call = new_call(
            arch,
            tool,
            args,
            agent,
            session,
            corr,
            d.get("annotations"),
            str(d.get("description") or ""),
            str(d.get("tool_status") or ""),
        )
        dec = decide(call)
        calls[corr] = call
        new_rule = dec.rule
        hits[new_rule] = hits.get(new_rule, 0) + 1
        new = dec.action
        if (
            expect is None
            and new is not recorded
            and recorded is Action.ALERT
            and not d.get("enforced", True)
        ):
            m = _LEARNING.match(reason)
            if m is not None and m.group(1) in action_of:
                rec = m.group(1)  # learning mode recorded what enforcement would do
                recorded = action_of[rec]
        if expect is not None:
            status = Status.PASS if new is action_of[expect] else Status.FAIL
        elif new is not recorded:
            status = Status.CHANGED
        elif new_rule != rule:
            status = Status.RULE_CHANGED
        else:
            passed += 1
            if keep_passing:
                cases.append(ReplayCase(name, lineno, call, dec, Status.PASS, None, rec, rule))
            continue
        case = ReplayCase(name, lineno, call, dec, status, expect, rec, rule)
        _count(fr, case)
        if status is not Status.PASS or keep_passing:
            cases.append(case)
    fr.cases += passed
    fr.passed += passed
    return fr


def _compare_session(fr: FileResult, lineno: int, d: dict[str, Any], table: Any) -> None:
    """Warn when a recorded session ran under other variables than this replay (a different
    workspace moves every relative path); keep the policy versions it was recorded under."""
    recorded = d.get("variables")
    if type(recorded) is dict and recorded:
        now = {str(k): str(v) for k, v in table.variables.items()}
        diff = [
            f"{k}={recorded.get(k)!s} (now {now.get(k)!s})"
            for k in sorted(set(recorded) | set(now))
            if str(recorded.get(k)) != str(now.get(k))
        ]
        if diff:
            fr.warnings.append(
                f"line {lineno}: recorded with other variables: {', '.join(diff)}; "
                "replay with the same --set"
            )
    version = d.get("policy_version")
    if type(version) is str and version and version not in fr.recorded_versions:
        fr.recorded_versions.append(version)  # machine output; a changed policy is the point


def _transcript_call(msg: Any, archetype: str, decided: frozenset[str]) -> ToolCall | str | None:
    """What the stdio proxy does with one classified client message: a ToolCall it decides
    (built by the proxy's own call builder), a str when it refuses the message before policy
    (the reason), None when it just forwards it (initialize, notifications, responses, other
    requests)."""
    from mcp_defense.protocol.calls import build_call, is_decided, near_decided_method
    from mcp_defense.protocol.jsonrpc import Kind

    kind = msg.kind
    if kind is Kind.INVALID:
        return str(msg.error_message)
    method = msg.method or ""
    if kind is Kind.NOTIFICATION:
        if method == "tools/call" or near_decided_method(method) == "tools/call":
            return f"{method} sent as a notification (no id)"
        return None
    if kind is not Kind.REQUEST:
        return None
    if method not in decided and not is_decided(method, msg.params):
        near = near_decided_method(method)
        return f"method {method!r} imitates {near!r}" if near is not None else None
    # "unknown" is the agent id the stdio proxy uses when none is given.
    return build_call(method, msg.params, archetype, agent_id="unknown")


def replay_transcript(
    table: DecisionTable,
    path: Path,
    archetype: str,
    report: Report,
    *,
    run: re.Pattern[str] | None = None,
    keep_passing: bool = False,
    progress: Progress | None = None,
) -> FileResult:
    """Decide every client→server message the stdio proxy would decide (tools/call and the
    other DECIDED_METHODS), parsed and classified by the proxy's own `parse_message`.

    Messages the proxy forwards undecided are skipped; messages it refuses before policy
    (duplicate keys, tools/call without id, bad batch elements…) are counted as refused; a
    line that is not JSON is an error. A line may carry an `expect` field.
    """
    from mcp_defense.protocol.jsonrpc import DECIDED_METHODS, PARSE_ERROR, Kind, parse_message

    name = display_path(path)
    fr = FileResult(name, InputKind.TRANSCRIPT)
    report.files.append(fr)
    for lineno, raw in _numbered_lines(path, name, progress):
        if raw.isspace():
            continue  # the proxy ignores blank keep-alive lines too
        msg = parse_message(raw)
        if msg.kind is Kind.INVALID and msg.error_code == PARSE_ERROR:
            detail = msg.error_message.removeprefix("invalid JSON: ")
            report.errors.append(InputError(name, lineno, f"not JSON: {detail}"))
            fr.errors += 1
            continue
        elements = msg.elements if msg.kind is Kind.BATCH else (msg,)
        for el in elements:
            if el.kind is Kind.BATCH:
                fr.refused += 1  # a nested batch
                continue
            got = _transcript_call(el, archetype, DECIDED_METHODS)
            if got is None:
                fr.skipped += 1
                continue
            if isinstance(got, str):
                fr.refused += 1
                continue
            expect = el.obj.get("expect")
            if expect is not None and expect not in ACTIONS:
                report.errors.append(
                    InputError(name, lineno, f"expect {expect!r} is not one of {sorted(ACTIONS)}")
                )
                fr.errors += 1
                continue
            tool = got.tool if type(got.tool) is str else json.dumps(got.tool)
            if run is not None and not run.search(f"{name}:{lineno} {tool}"):
                continue
            dec = table.decide(got)
            report.hits[dec.rule] = report.hits.get(dec.rule, 0) + 1
            if expect is None:
                status = Status.UNCHECKED
            else:
                status = Status.PASS if dec.action.value == expect else Status.FAIL
            case = ReplayCase(name, lineno, got, dec, status, expect, None, None)
            _count(fr, case)
            if status is not Status.PASS or keep_passing:
                report.cases.append(case)  # unchecked ones too: reporters list blocks
    return fr


# ---------------------------------------------------------------------------------------------
# Describing a call


def key_argument(table: DecisionTable, call: ToolCall, limit: int = 60) -> str:
    """The argument a reader recognises a call by: its command line when it spawns, else its
    first path, URL or command."""
    value = ""
    tail = False  # a long path is recognised by its end, a URL or command by its start
    try:
        f = table.facts(call.tool, call.arguments, call.annotations)
        if f.commands and f.spawns:
            value = " ".join(f.commands)
        elif f.paths:
            value, tail = f.paths[0], True
        elif f.urls:
            value = f.urls[0]
        elif f.commands:
            value = " ".join(f.commands)
    except Exception:  # noqa: BLE001 - description only; the decision already failed closed
        value = ""
    if not value and isinstance(call.arguments, dict):
        for v in call.arguments.values():
            if isinstance(v, str) and v:
                value = v
                break
    value = " ".join(value.split())
    if len(value) <= limit:
        return value
    return "…" + value[-(limit - 1) :] if tail else value[: limit - 1] + "…"


def rule_sources(table: DecisionTable) -> dict[str, tuple[str, str]]:
    """rule name → (kind, file:line:col), over every archetype of the table."""
    out: dict[str, tuple[str, str]] = {}
    for arch in sorted(table.archetypes):
        ar = table.rules_for(arch)
        if ar is None:
            continue
        groups: list[Iterable[Any]] = [ar.every(), ar.flow, ar.orphan]
        for g in groups:
            for r in g:
                out.setdefault(r.name, (r.kind, r.source))
    return out
