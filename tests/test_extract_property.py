"""Property tests: a secret spelled any way, hidden anywhere, is always found; and arbitrary
input either yields facts or raises ExtractionError — never anything else."""

from __future__ import annotations

import json
import shlex

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_defense.policy.extract import Environment, default_classifier, extract
from mcp_defense.policy.facts import ExtractionError

ENV = Environment(workspace="/workspace", home="/home/alice", user="alice", resolve_symlinks=False)
CLS = default_classifier()
SECRET = "/home/alice/.ssh/id_ed25519"
SEGMENTS = ["home", "alice", ".ssh", "id_ed25519"]

# How the path starts (each resolves to SECRET's parent chain).
ROOTS = {
    "abs": "/home/alice",
    "tilde": "~",
    "tilde-user": "~alice",
    "home": "$HOME",
    "home-braced": "${HOME}",
    "relative": "../home/alice",
    "dot-relative": "./../home/alice",
    "workspace": "/workspace/../home/alice",
    "proc-root": "/proc/self/root/home/alice",
    "proc-cwd": "/proc/self/cwd/../home/alice",
}
NOISE = ["/", "//", "/./", "/x/../", "/./././", "/.ssh/../"]


@st.composite
def spellings(draw: st.DrawFn) -> str:
    root = ROOTS[draw(st.sampled_from(sorted(ROOTS)))]
    tail = [".ssh", "id_ed25519"]
    text = root
    for segment in tail:
        sep = draw(st.sampled_from(NOISE))
        if sep == "/.ssh/../" and segment != "id_ed25519":
            sep = "/"
        text += sep + segment
    if draw(st.booleans()):
        text += draw(st.sampled_from(["/", "/.", "//"]))
    encoding = draw(st.sampled_from(["none", "some", "slashes", "double", "file-url"]))
    if encoding == "some":
        # Any character after an expansion prefix (`$HOME`, `~alice`): no consumer percent-decodes
        # *and then* expands variables, so encoding inside the prefix is not a real spelling.
        first = len(root) if root[0] in "$~" else 0
        index = draw(st.integers(first, len(text) - 1))
        ch = text[index]
        if ch not in "~$":
            text = text[:index] + f"%{ord(ch):02X}" + text[index + 1 :]
    elif encoding == "slashes":
        text = text.replace("/", "%2F")
    elif encoding == "double":
        text = text.replace("/", "%252f")
    elif encoding == "file-url":
        text = ("file://" + text) if text.startswith("/") else ("file:" + text)
    return text


KEYS = st.sampled_from(
    ["path", "file", "Path", "target_path", "blob", "x", "data", "q", "items", "nested"]
)


def _wrap(value: object, draw: st.DrawFn) -> object:
    for _ in range(draw(st.integers(0, 6))):
        how = draw(st.sampled_from(["dict", "list", "json", "list-noise"]))
        if how == "dict":
            value = {draw(KEYS): value}
        elif how == "list":
            value = [value]
        elif how == "list-noise":
            value = [1, None, "ok", value, True]
        else:
            value = json.dumps(value)
    return value


@st.composite
def hidden_secret(draw: st.DrawFn) -> dict:
    spelling = draw(spellings())
    context = draw(st.sampled_from(["path", "generic", "command", "prose"]))
    if context == "path":
        value: object = {"path": spelling}
    elif context == "generic":
        value = {draw(KEYS): spelling}
    elif context == "command":
        program = draw(st.sampled_from(["cat", "less", "head -n1", "base64", "xxd"]))
        line = f"{program} {shlex.quote(spelling)}"
        if draw(st.booleans()):
            line = f"bash -c {shlex.quote(line)}"
        value = {"command": line}
    else:
        value = {"input": f"please look at {spelling} now"}
    wrapped = _wrap(value, draw)
    return wrapped if isinstance(wrapped, dict) else {"args": wrapped}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hidden_secret())
def test_secret_always_found(arguments: dict) -> None:
    facts = extract("some_tool", arguments, CLS, ENV)
    assert SECRET in facts.paths, (arguments, facts.paths)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["path", "url", "command", "code", "content", "x"]) | st.text(max_size=8),
        JSON,
        max_size=6,
    )
)
def test_arbitrary_json_never_crashes(arguments: dict) -> None:
    try:
        facts = extract("tool", arguments, CLS, ENV)
    except ExtractionError:
        return
    assert all(p.startswith("/") for p in facts.paths)


@settings(max_examples=400, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list(" \t\n'\"\\$`;&|<>(){}[]#~/*?=@:%.-_abcHOMEIFS0123456789")),
        max_size=80,
    )
)
def test_arbitrary_shell_never_crashes(command: str) -> None:
    try:
        facts = extract("run", {"command": command}, CLS, ENV)
    except ExtractionError:
        return
    assert facts.spawns
    assert all(p.startswith("/") for p in facts.paths)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_url_never_crashes(url: str) -> None:
    try:
        facts = extract("fetch", {"url": url, "x": url}, CLS, ENV)
    except ExtractionError:
        return
    for endpoint in facts.endpoints:
        host, _, port = endpoint.rpartition(":")
        assert host and port.isdigit() and int(port) <= 65535


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_code_never_crashes(code: str) -> None:
    try:
        extract("exec", {"code": code}, CLS, ENV)
    except ExtractionError:
        return
