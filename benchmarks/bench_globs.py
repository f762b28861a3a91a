"""Worst-case glob match: µs for one path of the extractor's length limit against one glob set.

    python benchmarks/bench_globs.py [--repeat N]

A glob comes from the policy (trusted), the path from the agent: any path up to
`MAX_PATH_BYTES` (policy/extract/limits.py) may be matched against every glob of the pack on
the proxy's only reader thread, so the figure that matters is the maximum, not the median.
Target: ≤ 1,000 µs (issue 12, item 1).

Cases:
(a) the pathological globs of the issue (`/w/*a*a*b`, `**/**/**/x`, several wildcards in one
    segment, …) against paths built to make a backtracking engine try every split;
(b) every glob set the built-in pack compiles (jewel levels, jewel sets, archetype paths and
    programs, case-insensitive where the pack's are) against paths at the limit built from each
    set's own globs (their literal parts repeated: the longest partial matches), plus flat,
    deep and home-rooted paths.

Each (set, path) pair is timed with the memo bypassed on a freshly compiled set ("cold": the
automaton is built as the path is read, the worst case for a path never seen) and then
`--repeat` times more ("warm": the median). The report gives the slowest pairs and the maximum
of both; the cold maximum is the figure held against the target.

(c) RE2 answers with a DFA built lazily in a bounded cache; a path crafted to need more states
than the cache holds makes RE2 fall back to its NFA simulation (still linear: path length ×
program size). The pack's sets are timed once more with the DFA starved (the smallest memory
budget the set compiles in), an upper bound on what thrashing the cache can cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcp_defense.policy import globs as globs_mod  # noqa: E402
from mcp_defense.policy.extract.limits import MAX_PATH_BYTES  # noqa: E402
from mcp_defense.policy.globs import GlobSet  # noqa: E402
from mcp_defense.policy.loader import load  # noqa: E402

TARGET_US = 1000.0
N = MAX_PATH_BYTES


def fill(unit: str, n: int = N, tail: str = "") -> str:
    """`unit` repeated up to n characters in all, then `tail`."""
    body = (unit * (n // max(len(unit), 1) + 1))[: n - len(tail)]
    return body + tail


# (name, glob, ignore_case, adversarial path)
PATHOLOGICAL: list[tuple[str, str, bool, str]] = [
    ("/w/*a*a*b, 4 KiB of a", "/w/*a*a*b", False, "/w/" + fill("a", N - 3)),
    ("**/**/**/x, 2,048 segments", "**/**/**/x", False, fill("/a", N - 2, "/y")),
    ("**/**/**/x, 2,048 segments (icase)", "**/**/**/x", True, fill("/a", N - 2, "/y")),
    (
        "8 wildcards in one segment",
        "/w/*a*b*c*d*e*f*g*h",
        False,
        "/w/" + fill("abcdefg", N - 3),
    ),
    ("*a*a*a*a*a*a*b, one segment", "*a*a*a*a*a*a*b", False, fill("a", N)),
    ("**/*a*a*a*a*b, deep", "**/*a*a*a*a*b", False, fill("/aaaa", N)),
    ("/**/*.{a,b,c}x**y", "/**/*.{a,b,c}x**y", False, fill("/.ax", N)),
    ("?*?*?*?*?*!", "?*?*?*?*?*!", False, fill("?", N)),
    ("~/**/**/.ssh/**/id_*", "~/**/**/.ssh/**/id_*", True, "/home/alice" + fill("/.ssh", N - 11)),
]


def pack_globsets() -> list[tuple[str, tuple[str, ...], bool]]:
    """Every glob set the built-in pack's compilation creates (recorded as they are built)."""
    made: list[tuple[tuple[str, ...], bool]] = []
    original = GlobSet.__init__

    def record(self: GlobSet, globs: object, *, ignore_case: bool = False) -> None:
        original(self, globs, ignore_case=ignore_case)  # type: ignore[arg-type]
        made.append((self.globs, ignore_case))

    GlobSet.__init__ = record  # type: ignore[method-assign]
    try:
        result = load(None, {"workspace": "/w", "home": "/home/alice"})
    finally:
        GlobSet.__init__ = original  # type: ignore[method-assign]
    if result.table is None:
        raise SystemExit("the built-in pack did not compile")
    out = []
    for i, (globs, icase) in enumerate(made):
        if globs:
            out.append((f"pack set {i} ({len(globs)} globs: {globs[0]}, …)", globs, icase))
    return out


def skeleton(glob: str) -> str:
    """The literal parts of a glob, `~` as a home, wildcards dropped, the first alternative."""
    out = []
    i = 0
    if glob.startswith("~"):
        out.append("/home/alice")
        i = 1
    depth = 0
    while i < len(glob):
        c = glob[i]
        if c in "*?":
            pass
        elif c == "[":
            j = glob.find("]", i + 2)
            out.append("x")
            i = j if j > 0 else i
        elif c == "{":
            depth += 1
        elif c == "," and depth:
            j = glob.find("}", i)
            i = j - 1 if j > 0 else i
        elif c == "}" and depth:
            depth -= 1
        else:
            out.append(c)
        i += 1
    return "".join(out)


def paths_for(globs: tuple[str, ...]) -> list[str]:
    paths = [
        fill("a", N - 1, "/")[::-1],  # "/aaaa…"
        fill("/a", N),
        "/home/alice" + fill("/.a", N - 11),
        "/home/alice/" + fill("a", N - 12),
    ]
    for g in globs[:64]:
        s = skeleton(g)
        if s:
            body = s if s.startswith("/") else "/" + s
            paths.append(fill(body, N - 1, "\x01"))  # repeated partial matches, then a miss
            paths.append(fill(body.rstrip("/") + "/", N))
    return paths


def timed(
    globs: tuple[str, ...], icase: bool, path: str, repeat: int
) -> tuple[float, float, object]:
    """(cold µs, warm median µs, result) of matching `path` against a fresh set."""
    match = matcher(GlobSet(globs, ignore_case=icase))
    clock = time.perf_counter_ns
    t0 = clock()
    result = match(path)
    cold = clock() - t0
    samples = []
    for _ in range(repeat):
        t0 = clock()
        match(path)
        samples.append(clock() - t0)
    return cold / 1000, statistics.median(samples) / 1000, result


def starved(globs: tuple[str, ...], icase: bool, path: str) -> float:
    """µs for one match with the smallest RE2 memory budget the set compiles in."""
    options = globs_mod._OPTIONS_ICASE if icase else globs_mod._OPTIONS
    saved = options.max_mem
    try:
        mem = 16 << 10
        while True:
            options.max_mem = mem
            try:
                match = GlobSet(globs, ignore_case=icase).match_uncached
                break
            except globs_mod.GlobError:
                mem *= 2
    finally:
        options.max_mem = saved
    samples = []
    for _ in range(3):  # the NFA keeps no state between matches: the median drops preemptions
        t0 = time.perf_counter_ns()
        match(path)
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


def matcher(gs: GlobSet) -> Callable[[str], object]:
    """The set's match without its memo (the memo would time a dict lookup)."""
    uncached = getattr(gs, "match_uncached", None)
    if uncached is not None:
        return uncached  # type: ignore[no-any-return]
    return lambda p: gs._match(p) if gs._match is not None else None  # type: ignore[attr-defined]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only-pathological", action="store_true")
    ap.add_argument("--only-pack", action="store_true")
    args = ap.parse_args()
    engine = getattr(globs_mod, "ENGINE", "python re (backtracking)")
    print(f"engine: {engine}; paths of {N} characters; target ≤ {TARGET_US:.0f} µs per match\n")
    cold: list[tuple[float, str]] = []
    warm: list[tuple[float, str]] = []
    if not args.only_pack:
        print("(a) pathological globs            cold µs    warm µs")
        for name, glob, icase, path in PATHOLOGICAL:
            c, w, hit = timed((glob,), icase, path, args.repeat)
            cold.append((c, name))
            warm.append((w, name))
            print(f"  {name:36} {c:9.1f}  {w:9.1f}  (match: {bool(hit)})")
    if not args.only_pathological:
        sets = pack_globsets()
        pairs = 0
        slowest: list[tuple[float, float, str]] = []
        for name, globs, icase in sets:
            worst = (0.0, 0.0, "")
            for path in paths_for(globs):
                c, w, _ = timed(globs, icase, path, args.repeat)
                pairs += 1
                if c > worst[0]:
                    worst = (c, w, f"{name} × {path[:24]!r}…")
            slowest.append(worst)
        slowest.sort(reverse=True)
        print(
            f"\n(b) built-in pack: {len(sets)} glob sets, {pairs} (set, path) pairs; slowest cold:"
        )
        for c, w, what in slowest[:5]:
            print(f"  {c:9.1f} µs cold {w:9.1f} µs warm  {what}")
        cold.extend((c, what) for c, _, what in slowest)
        warm.extend((w, what) for _, w, what in slowest)
    if not args.only_pathological and hasattr(globs_mod, "_OPTIONS"):
        nfa: list[tuple[float, str]] = []
        for name, globs, icase in sets:
            worst_nfa = 0.0
            for path in paths_for(globs):
                worst_nfa = max(worst_nfa, starved(globs, icase, path))
            nfa.append((worst_nfa, name))
        nfa.sort(reverse=True)
        print("\n(c) the pack's sets with the DFA starved (NFA fallback); slowest:")
        for us, what in nfa[:3]:
            print(f"  {us:9.1f} µs  {what}")
        cold.extend(nfa)
    worst_cold, worst_name = max(cold)
    mark = "ok" if worst_cold <= TARGET_US else "MISSED"
    print(f"\nworst-case glob match: {worst_cold:.1f} µs cold ({worst_name}), ", end="")
    print(f"{max(warm)[0]:.1f} µs warm — target ≤ 1000 µs: {mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
