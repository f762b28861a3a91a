"""protocol/jsonrpc.py: framing, strict parsing and classification (the security boundary)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_defense.protocol.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    Kind,
    LineFramer,
    Oversize,
    encode,
    error_response,
    exceeds_depth,
    loads_strict,
    nesting_depth,
    parse_message,
    response_info,
    sniff_id,
)

CALL = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/w/a.py"}}}'


# --- framing ---------------------------------------------------------------------------------


def feed_all(framer: LineFramer, chunks: list[bytes]) -> list[bytes | Oversize]:
    out: list[bytes | Oversize] = []
    for c in chunks:
        out.extend(framer.feed(c))
    return out


def test_framer_splits_lines_and_keeps_newlines():
    f = LineFramer(100)
    assert f.feed(b'{"a":1}\n{"b":2}\n{"c"') == [b'{"a":1}\n', b'{"b":2}\n']
    assert f.feed(b":3}\n") == [b'{"c":3}\n']
    assert f.finish() is None


def test_framer_single_line_chunk_is_returned_without_copy():
    f = LineFramer(100)
    chunk = b'{"a":1}\n'
    assert f.feed(chunk)[0] is chunk


def test_framer_line_spanning_many_chunks():
    f = LineFramer(1 << 20)
    line = b"x" * 300_000 + b"\n"
    chunks = [line[i : i + 4096] for i in range(0, len(line), 4096)]
    assert feed_all(f, chunks) == [line]


def test_framer_limit_is_exclusive_of_newline():
    f = LineFramer(10)
    assert f.feed(b"0123456789\n") == [b"0123456789\n"]
    out = f.feed(b"0123456789A\nok\n")
    assert out[0] == Oversize(11, b"0123456789A") and out[1] == b"ok\n"


def test_framer_oversize_across_chunks_discards_and_resyncs():
    f = LineFramer(1000)
    head = b'{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"x":"'
    out = f.feed(head)
    for _ in range(50):
        out += f.feed(b"y" * 999)
        assert f.buffered <= 1000  # never holds more than the ceiling
    out += f.feed(b'"}}\n{"jsonrpc":"2.0","id":43,"method":"ping"}\n')
    assert isinstance(out[0], Oversize)
    assert out[0].size == len(head) + 50 * 999 + 3
    assert sniff_id(out[0].head) == 42
    assert out[1] == b'{"jsonrpc":"2.0","id":43,"method":"ping"}\n'


def test_framer_finish_returns_unterminated_tail():
    f = LineFramer(100)
    assert f.feed(b'{"a":1}') == []
    assert f.finish() == b'{"a":1}'
    f.feed(b"z" * 200)
    assert f.finish() == Oversize(200, b"z" * 200)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=30),
    limit=st.integers(min_value=1, max_value=50),
)
def test_framer_matches_reference_for_any_chunking(lines, cuts, limit):
    data = b"".join(line + b"\n" for line in lines)
    chunks, i = [], 0
    for c in cuts:
        chunks.append(data[i : i + c])
        i += c
    chunks.append(data[i:])
    got = feed_all(LineFramer(limit), [c for c in chunks if c])
    want = [
        line + b"\n" if len(line) <= limit else Oversize(len(line), line[:4096]) for line in lines
    ]
    assert got == want


# --- strict parsing ----------------------------------------------------------------------------


def test_classify_request_notification_response_error():
    m = parse_message(CALL)
    assert (m.kind, m.id, m.method, m.params["name"]) == (
        Kind.REQUEST,
        7,
        "tools/call",
        "read_file",
    )
    assert (
        parse_message(b'{"jsonrpc":"2.0","method":"notifications/initialized"}').kind
        is Kind.NOTIFICATION
    )
    assert parse_message(b'{"jsonrpc":"2.0","id":"a","result":{}}').kind is Kind.RESPONSE
    err = parse_message(b'{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}')
    assert err.kind is Kind.ERROR and err.id is None


def test_batch_elements_are_classified():
    m = parse_message(b"[" + CALL + b',{"jsonrpc":"2.0","method":"x"},3]')
    assert m.kind is Kind.BATCH
    assert [e.kind for e in m.elements] == [Kind.REQUEST, Kind.NOTIFICATION, Kind.INVALID]
    assert parse_message(b"[]").kind is Kind.INVALID


@pytest.mark.parametrize(
    "data, code, rid",
    [
        (b'{"jsonrpc":"2.0","id":5,"method":"ping"', PARSE_ERROR, 5),  # truncated, id sniffed
        (b"garbage", PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping"} {}', PARSE_ERROR, 1),  # trailing data
        (b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"ping"}', PARSE_ERROR, None),  # BOM
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":NaN}}', PARSE_ERROR, 1),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":-Infinity}}', PARSE_ERROR, 1),
        (
            b'{"jsonrpc":"2.0","id":2,"method":"x","params":{"s":"\xff"}}',
            PARSE_ERROR,
            2,
        ),  # bad UTF-8
        (
            b'{"jsonrpc":"2.0","id":2,"method":"x","params":{"s":"\xed\xa0\x80"}}',
            PARSE_ERROR,
            2,
        ),  # CESU surrogate
        (
            b'{"jsonrpc":"2.0","id":2,"method":"x","params":{"s":"\xc0\xaf"}}',
            PARSE_ERROR,
            2,
        ),  # overlong '/'
        (b'{"jsonrpc":"1.0","id":3,"method":"x"}', INVALID_REQUEST, 3),
        (b'{"id":3,"method":"x"}', INVALID_REQUEST, 3),
        (b'{"jsonrpc":"2.0","id":true,"method":"x"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"x"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":null,"method":"x"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":4,"method":7}', INVALID_REQUEST, 4),
        (b'{"jsonrpc":"2.0","id":4,"method":"x","params":"s"}', INVALID_PARAMS, 4),
        (
            b'{"jsonrpc":"2.0","id":4,"result":1,"error":{"code":1,"message":""}}',
            INVALID_REQUEST,
            4,
        ),
        (b'{"jsonrpc":"2.0","id":4,"error":"bad"}', INVALID_REQUEST, 4),
        (b"42", INVALID_REQUEST, None),
    ],
)
def test_invalid_messages(data, code, rid):
    m = parse_message(data)
    assert m.kind is Kind.INVALID, m
    assert m.error_code == code, m.error_message
    assert m.id == rid


@pytest.mark.parametrize(
    "data",
    [
        b'{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"path":"/ok","pa\\u0074h":"/etc/shadow"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"l":[{"k":1},{"k":1,"k":2}]}}',
    ],
)
def test_duplicate_keys_are_refused_at_any_depth(data):
    """Parsers disagree on duplicates (first wins vs last wins): the policy would decide on
    one value and the server act on the other, so the message is refused."""
    m = parse_message(data)
    assert m.kind is Kind.INVALID and "duplicate" in m.error_message and m.id == 1


def test_lone_surrogate_escape_is_valid_json():
    m = parse_message(b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"s":"\\ud800"}}')
    assert m.kind is Kind.REQUEST and m.params["s"] == "\ud800"


def test_json_whitespace_only():
    assert loads_strict(' \t\r\n{"a":1}\r\n') == {"a": 1}
    with pytest.raises(ValueError):
        loads_strict('\x0b{"a":1}')
    with pytest.raises(ValueError):
        loads_strict('{"a":1}\u3000')


# --- nesting depth -----------------------------------------------------------------------------


def test_hundred_thousand_levels_refused_without_recursion():
    deep = (
        b'{"jsonrpc":"2.0","id":9,"method":"x","params":{"a":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}}"
    )
    m = parse_message(deep)
    assert m.kind is Kind.INVALID and m.error_code == PARSE_ERROR and "nesting" in m.error_message
    assert m.id == 9
    unclosed = b"[" * 100_000
    assert parse_message(unclosed).kind is Kind.INVALID


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"code": "[[[[{{{{" * 10_000, "esc": 'a\\"[[[[\\\\"'}).encode()
    assert nesting_depth(text) == 1
    assert not exceeds_depth(text, 4)
    assert (
        parse_message(b'{"jsonrpc":"2.0","id":1,"method":"x","params":' + text + b"}").kind
        is Kind.REQUEST
    )


def test_depth_limit_boundary():
    ok = b"[" * 128 + b"]" * 128
    assert nesting_depth(ok) == 128 and not exceeds_depth(ok, 128)
    assert exceeds_depth(b"[" + ok + b"]", 128)


def _reference_depth(v: object) -> int:
    stack = [(v, 1)]
    best = 0
    while stack:
        x, d = stack.pop()
        if isinstance(x, dict):
            best = max(best, d)
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list):
            best = max(best, d)
            stack.extend((y, d + 1) for y in x)
    return best


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n\u00e9'),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet='[]{}"\\k'), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_nesting_depth_matches_reference(value, ascii_only):
    assert nesting_depth(json.dumps(value, ensure_ascii=ascii_only).encode()) == _reference_depth(
        value
    )


# --- id sniffing and response matching -----------------------------------------------------


@pytest.mark.parametrize(
    "data, rid",
    [
        (b'{"jsonrpc":"2.0","id":12,"result":{}}', 12),
        (b'{"id":"x\\"y","jsonrpc":"2.0","method":"m"}', 'x"y'),
        (b'{"result":{"id":99},"jsonrpc":"2.0","id":3}\n', 3),  # TypeScript SDK key order
        (b'{"result":{"nested":{"id":99}}}', None),  # only top-level ids count
        (b'{"jsonrpc":"2.0","method":"m","params":{"id":5}}', None),
        (b"[1,2]", None),
    ],
)
def test_sniff_id(data, rid):
    assert sniff_id(data) == rid


def test_response_info_large_line_is_not_parsed():
    big = (
        b'{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"'
        + b"a" * 200_000
        + b'"}],"isError":true}}'
    )
    info = response_info(big)
    assert info is not None and info.id == 5 and info.is_error
    # A line that is not valid JSON still yields id/kind from head and tail: proof of no parse.
    broken = b'{"jsonrpc":"2.0","id":6,"result":{"x":"' + b"\xff" * 20_000 + b'"}}'
    assert response_info(broken).id == 6


def test_response_info_exact_for_small_lines():
    assert (
        response_info(
            b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\\"isError\\":true"}],"isError":false}}'
        ).is_error
        is False
    )
    assert (
        response_info(b'{"jsonrpc": "2.0", "id": 1, "result": {"isError": true}}').is_error is True
    )
    assert (
        response_info(b'{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}').is_error is True
    )
    assert response_info(b'{"jsonrpc":"2.0","id":1,"method":"ping"}') is None
    assert response_info(b'{"jsonrpc":"2.0","method":"notifications/progress"}') is None


# --- building ----------------------------------------------------------------------------------


def test_error_response_is_one_ascii_line():
    line = error_response("r-1", -32010, "denied: é \ud800", {"rule": "crown_jewel"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    line.decode("ascii")
    obj = json.loads(line)
    assert obj == {
        "jsonrpc": "2.0",
        "id": "r-1",
        "error": {"code": -32010, "message": "denied: é \ud800", "data": {"rule": "crown_jewel"}},
    }
    assert json.loads(error_response(None, PARSE_ERROR, "x"))["id"] is None
    assert encode([1]) == b"[1]\n"


def test_parse_is_fast_enough_for_16_mib(tmp_path):
    """Not a timing assertion: a 16 MiB argument full of brackets-in-strings and escapes
    parses (no quadratic paths, no recursion)."""
    rnd = random.Random(1)
    blob = "".join(rnd.choice('[]{}"\\abc\n') for _ in range(1 << 20)) * 16
    line = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "write_file", "arguments": {"content": blob}},
        }
    ).encode()
    m = parse_message(line)
    assert m.kind is Kind.REQUEST and m.params["arguments"]["content"] == blob
