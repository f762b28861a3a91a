"""Glob sets (policy/globs.py) run on RE2: the same language as the Python `re` translation they
replace (tests/support/glob_reference.py, compared on a corpus of short paths), and correct
answers for the patterns that made that translation backtrack for seconds on a 4 KiB path."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator

import pytest
from support import glob_reference as reference

from mcp_defense.policy.extract.limits import MAX_PATH_BYTES
from mcp_defense.policy.globs import GlobError, GlobSet
from mcp_defense.policy.loader import load

SYNTHETIC = [
    "/w/*a*a*b",
    "**/**/**/x",
    "**/x",
    "**",
    "*",
    "?",
    "/w/**",
    "/w/**/",
    "/w/**/*.py",
    "/w/a**b",
    "/w/**b",
    "a/**",
    "~",
    "~/",
    "~/.ssh/**",
    "~/.ssh/id_*[!b]",
    "~/.ssh/id_[a-c]?",
    "~x/y",
    "/w/[^a]*",
    "/w/[!a-c]x",
    "/w/[a-]",
    "/w/[a-b-c]",
    "/w/[\\]",
    "/w/[[]x",
    "/w/[.]",
    "/w/[*?]",
    "/w/[é-ü]",
    "/w/{a,b}/{c,{d,e}}",
    "/w/{,x}y",
    "/w/a}b,c",
    "/w/{a,b*}*c",
    "/w/.+()|^$#&~ \t-=!%@:;'\"`<>",
    "/w/ß/K/ſ",
    "/w/\u212a",
    "*/*.env*",
    "**/.env.*",
    "/w/*.{json,yaml,yml}",
    "/proc/*/environ",
    "**/a?????b",
    "//a//b",
    "/w/\\*",
]


def _pack_sets(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[str, ...], bool]]:
    made: list[tuple[tuple[str, ...], bool]] = []
    original = GlobSet.__init__

    def record(self: GlobSet, globs: object, *, ignore_case: bool = False) -> None:
        original(self, globs, ignore_case=ignore_case)  # type: ignore[arg-type]
        made.append((self.globs, ignore_case))

    monkeypatch.setattr(GlobSet, "__init__", record)
    assert load(None, {"workspace": "/w", "home": "/home/alice"}).table is not None
    monkeypatch.undo()
    return [m for m in made if m[0]]


def _skeleton(glob: str, rng: random.Random) -> str:
    """A path the glob might match: wildcards filled with a few random characters."""
    out = []
    i = 0
    if glob.startswith("~"):
        out.append(rng.choice(["/home/alice", "/Users/bob", "/root", "/var/lib/jenkins", "/w"]))
        i = 1
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(rng.choice(["", "a", "x.y", "a/b", ".", "b/"]))
        elif c == "?":
            out.append(rng.choice(["a", "B", "/", "é"]))
        elif c == "[":
            out.append(rng.choice(["a", "b", "-", "]", "\\", "["]))
        elif c in "{},":
            out.append(rng.choice(["", c]))
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _mutations(path: str, rng: random.Random, n: int) -> Iterator[str]:
    alphabet = "/a.bAB_-~xé\n" + path
    for _ in range(n):
        p = list(path)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(4)
            k = rng.randrange(len(p) + 1)
            if op == 0:
                p.insert(k, rng.choice(alphabet))
            elif op == 1 and p:
                del p[min(k, len(p) - 1)]
            elif op == 2 and p:
                p[min(k, len(p) - 1)] = rng.choice(alphabet)
            else:
                p = [c.swapcase() for c in p]
        yield "".join(p)


def _paths_for(globs: tuple[str, ...], rng: random.Random) -> list[str]:
    paths = ["", "/", "/w", "/w/", "/home/alice", "/home/alice/", "/home/alice/.ssh/id_rsa"]
    for g in globs:
        for _ in range(3):
            s = _skeleton(g, rng)
            paths.append(s)
            paths.extend(_mutations(s, rng, 3))
    return paths


def _same(globs: tuple[str, ...], icase: bool, paths: list[str]) -> None:
    new = GlobSet(globs, ignore_case=icase)
    with warnings.catch_warnings():  # Python's "possible nested set" for `[[]`: read literally
        warnings.simplefilter("ignore", FutureWarning)
        old = reference.compile_globs(globs, ignore_case=icase)
    assert old is not None
    for p in paths:
        assert new.matches(p) == (old.match(p) is not None), (globs[:3], icase, p)


@pytest.mark.parametrize("icase", [False, True])
def test_synthetic_globs_match_as_the_python_translation(icase: bool) -> None:
    rng = random.Random(12)
    for g in SYNTHETIC:
        _same((g,), icase, _paths_for((g,), rng))
    _same(tuple(SYNTHETIC), icase, _paths_for(tuple(SYNTHETIC), rng))


def test_the_packs_glob_sets_match_as_the_python_translation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sets = _pack_sets(monkeypatch)
    assert len(sets) > 20
    rng = random.Random(1)
    for globs, icase in sets:
        _same(globs, icase, _paths_for(globs, rng))


N = MAX_PATH_BYTES


@pytest.mark.parametrize(
    ("glob", "path", "expected"),
    [
        ("/w/*a*a*b", "/w/" + "a" * (N - 3), False),
        ("/w/*a*a*b", "/w/" + "a" * (N - 4) + "b", True),
        ("/w/*a*a*b", "/w/" + "a" * (N - 5) + "/b", False),
        ("**/**/**/x", "/a" * (N // 2 - 1) + "/y", False),
        ("**/**/**/x", "/a" * (N // 2 - 1) + "/x", True),
        ("/w/*a*b*c*d*e*f*g*h", "/w/" + "abcdefg" * ((N - 3) // 7), False),
        ("/w/*a*b*c*d*e*f*g*h", "/w/" + "abcdefg" * ((N - 4) // 7) + "h", True),
        ("*a*a*a*a*a*a*b", "a" * N, False),
        ("?*?*?*?*?*!", "?" * N, False),
        ("?*?*?*?*?*!", "?" * (N - 1) + "!", True),
        ("~/**/**/.ssh/**/id_*", "/home/alice" + "/.ssh" * ((N - 11) // 5), False),
        ("~/**/**/.ssh/**/id_*", "/home/alice" + "/.ssh" * ((N - 20) // 5) + "/id_rsa", True),
    ],
)
@pytest.mark.parametrize("icase", [False, True])
def test_pathological_globs_answer_correctly_at_the_path_limit(
    glob: str, path: str, expected: bool, icase: bool
) -> None:
    assert len(path.encode()) <= N
    assert GlobSet([glob], ignore_case=icase).matches(path) is expected


def test_a_lone_surrogate_is_one_character() -> None:
    """JSON can carry `\\ud800`; UTF-8 cannot: it is read as U+FFFD, one character for one."""
    gs = GlobSet(["~/.ssh/id_?", "/w/*/x"])
    assert gs.matches("/home/alice/.ssh/id_\ud800")
    assert gs.matches("/w/\udcff\udcfe/x")
    assert not gs.matches("/w/\ud800/y")
    assert not GlobSet(["/w/?"]).matches("/w/\ud800\ud800")


@pytest.mark.parametrize("glob", ["", "/w/[abc", "/w/{a,b", "/w/[]", "/w/[!]x", "/w/[z-a]"])
def test_bad_globs_are_glob_errors(glob: str) -> None:
    with pytest.raises(GlobError):
        GlobSet([glob])
