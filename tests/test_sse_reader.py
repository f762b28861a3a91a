"""The HTTP proxy's SSE reader: never changes a byte it passes, whatever the chunking."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_defense.protocol.jsonrpc import response_info
from mcp_defense.proxy.web import BodyTap, Ended, Part, SSEReader, Whole, sse_event

_value = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40
)
_line = st.one_of(
    st.tuples(st.just("data"), _value),
    st.tuples(st.just("event"), st.sampled_from(["message", "endpoint", "x"])),
    st.tuples(st.just("id"), _value),
    st.tuples(st.just(""), _value),  # a comment
    st.tuples(st.just("retry"), st.just("1000")),
)


def _render(events: list[list[tuple[str, str]]], eol: str) -> bytes:
    out = []
    for ev in events:
        for name, value in ev:
            out.append(f"{name}: {value}{eol}" if name else f":{value}{eol}")
        out.append(eol)
    return "".join(out).encode()


def _feed_all(reader: SSEReader, data: bytes, cuts: list[int]) -> list[object]:
    pieces: list[object] = []
    last = 0
    for c in sorted({min(c, len(data)) for c in cuts}) + [len(data)]:
        pieces += reader.feed(data[last:c])
        last = c
    pieces += reader.close()
    return pieces


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.lists(_line, min_size=1, max_size=5), max_size=6),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
    hold=st.sampled_from([8, 64, 1 << 20]),
)
def test_bytes_pass_unchanged_and_data_is_read(
    events: list[list[tuple[str, str]]], eol: str, cuts: list[int], hold: int
) -> None:
    data = _render(events, eol)
    pieces = _feed_all(SSEReader(hold), data, cuts)
    passed = b"".join(p.raw for p in pieces if isinstance(p, Whole | Part))
    assert passed == data
    if hold == 1 << 20:  # nothing is large: every event comes out whole, data joined by \n
        wholes = [p for p in pieces if isinstance(p, Whole)]
        assert len(wholes) == len(events)
        for w, ev in zip(wholes, events, strict=True):
            datas = [v.encode() for n, v in ev if n == "data"]
            assert w.data == (b"\n".join(datas) if datas else None)


def test_large_event_streams_with_its_id_kept() -> None:
    msg = (
        b'{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"'
        + b"x" * (3 << 20)
        + b'"}]}}'
    )
    data = b"id: 7\n" + sse_event(msg)
    reader = SSEReader(hold=1 << 16)
    pieces = _feed_all(reader, data, list(range(0, len(data), 65_536)))
    assert b"".join(p.raw for p in pieces if isinstance(p, Part)) == data
    ended = [p for p in pieces if isinstance(p, Ended)]
    assert len(ended) == 1 and ended[0].streamed.size == len(msg)
    info = response_info(ended[0].streamed.sample)
    assert info is not None and info.id == 42 and not info.is_error


def test_unterminated_event_is_not_dispatched() -> None:
    reader = SSEReader()
    assert reader.feed(b"event: message\ndata: {}") == []
    assert reader.close() == []


def test_body_tap_holds_small_and_streams_large() -> None:
    tap = BodyTap(hold=10)
    assert tap.feed(b"12345") == b"" and not tap.streaming
    assert tap.feed(b"678901234") == b"12345678901234" and tap.streaming
    assert tap.feed(b"end") == b"end"
    s = tap.streamed()
    assert s.size == 17 and s.head.startswith(b"12345") and s.tail.endswith(b"end")
