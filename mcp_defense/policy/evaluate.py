"""The `policy eval` loop: JSON lines in, one decision line out per line, in order.

It lives below the CLI so that the benchmark (`policy/bench.py`) measures the very loop
`policy eval` runs without importing the command line.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

from mcp_defense.protocol.calls import call_from_line

_enc = json.encoder.encode_basestring  # the C string escaper json itself uses


def _decision_line(decision: str, rule: str, reason: str, version: str, rid: Any) -> str:
    """One output line, built directly (json.dumps per line would double eval's cost)."""
    line = (
        f'{{"decision":"{decision}","rule":{_enc(rule)},"reason":{_enc(reason)},'
        f'"policy_version":"{version}"'
    )
    if rid is not None:
        t = type(rid)
        line += ',"id":' + (_enc(rid) if t is str else str(rid) if t is int else json.dumps(rid))
    return line + "}"


def eval_lines(table: Any, lines: Any, archetype: str, write: Any) -> int:
    """The eval loop: one JSON line out per line in, in order. Returns how many lines."""
    version = table.version
    decide = table.decide
    buf: list[str] = []
    n = 0
    for raw in lines:
        n += 1
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            out = _decision_line("deny", "malformed_input", "empty line", version, None)
        else:
            lc = call_from_line(line, archetype)
            if lc.call is None:
                out = _decision_line("deny", "malformed_input", lc.error, version, lc.request_id)
            else:
                d = decide(lc.call)
                out = _decision_line(d.action.value, d.rule, d.reason, version, lc.request_id)
        buf.append(out)
        if len(buf) >= 512:
            write("\n".join(buf) + "\n")
            buf.clear()
    if buf:
        write("\n".join(buf) + "\n")
    return n


_CHUNK = 2048  # lines per work unit for parallel eval


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_worker_state: tuple[Any, str] | None = None  # (table, archetype), inherited by fork


def _eval_chunk(lines: list[bytes]) -> str:
    assert _worker_state is not None
    out: list[str] = []
    eval_lines(_worker_state[0], lines, _worker_state[1], out.append)
    return "".join(out)


def eval_stream(table: Any, stream: Any, archetype: str, write: Any, jobs: int) -> int:
    """Decide a stream in `jobs` processes, output in input order.

    The table holds closures and cannot be pickled, so workers are forked after it is
    compiled and inherit it; only raw lines and output text cross process boundaries. Input
    that fits in one chunk is decided in-process (no fork for a handful of lines).
    """
    global _worker_state
    it = iter(stream)
    first = list(itertools.islice(it, _CHUNK))
    if jobs <= 1 or len(first) < _CHUNK:
        n = eval_lines(table, first, archetype, write)
        return n + eval_lines(table, it, archetype, write)

    def chunks() -> Any:
        yield first
        while chunk := list(itertools.islice(it, _CHUNK)):
            yield chunk

    import multiprocessing

    _worker_state = (table, archetype)
    n = 0
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for text in pool.imap(_eval_chunk, chunks()):
                n += text.count("\n")
                write(text)
    finally:
        _worker_state = None
    return n
