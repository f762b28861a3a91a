"""SIEM sinks against real receivers on 127.0.0.1 (Splunk HEC, webhook, OTLP/HTTP): refused,
500, hung, then back — every event delivered, in order, none lost, duplicates only of the
same event_id (at-least-once), also across a restart; a bounded spool that reports what it
drops; secrets masked before they leave the process."""

from __future__ import annotations

import json
import time
from datetime import UTC
from pathlib import Path

import pytest
from support.sink_receivers import HEC_TOKEN, WEBHOOK_SECRET, Receiver

from mcp_defense.events.mask import MASK, mask_event
from mcp_defense.events.model import EventsDropped, ServerExit, ToolCallEvent
from mcp_defense.events.record import event_dict
from mcp_defense.events.sinks import SinkOptions, split_splunk, transports
from mcp_defense.events.sinks.forwarder import DeliveryConfig, Forwarder
from mcp_defense.events.sinks.spool import Spool

WAIT = 30.0  # generous bound for delivery; the tests never assert how fast


def fast_config(spool: Path, **kw) -> DeliveryConfig:
    base = dict(
        spool_dir=spool,
        flush_s=0.01,
        retry_min_s=0.01,
        retry_max_s=0.05,
        close_timeout_s=0.5,
        adopt_every_s=0.05,
        batch_size=7,
    )
    base.update(kw)
    return DeliveryConfig(**base)


def transport_for(rx: Receiver, tmp_path: Path):
    secret = tmp_path / "secret"
    secret.write_bytes(WEBHOOK_SECRET + b"\n")
    opts = SinkOptions(timeout_s=0.3, webhook_secret_file=str(secret))
    if rx.kind == "splunk":
        opts.splunk = [f"{rx.url}:{HEC_TOKEN}"]
    elif rx.kind == "webhook":
        opts.webhook = [rx.url]
    else:
        opts.otlp = [rx.url]
    (t,) = transports(opts)
    return t


def event(i: int) -> ToolCallEvent:
    return ToolCallEvent(
        correlation_id=f"tc_{i}",
        agent_id="a",
        archetype="filesystem",
        tool="read_file",
        arguments={"path": f"/w/{i}", "api_key": "sk-live-should-never-leave"},
        decision="allow",
        rule="",
        reason="",
        policy_version="v",
    )


def wait_for(pred, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def first_seen(ids: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in ids:
        seen.setdefault(i, None)
    return list(seen)


@pytest.mark.parametrize("kind", ["splunk", "webhook", "otlp"])
def test_refused_500_hang_then_recovery_across_restart(kind, tmp_path):
    rx = Receiver(kind)
    try:
        transport = transport_for(rx, tmp_path)
        fwd = Forwarder(transport, fast_config(tmp_path / "spool"), warn=lambda m: None)
        sent: list[str] = []

        def emit(n: int) -> None:
            for _ in range(n):
                ev = event(len(sent))
                sent.append(ev.event_id)
                fwd.emit(ev)

        emit(5)
        wait_for(lambda: len(rx.ids()) >= 5, "first events")  # healthy
        rx.refuse()
        emit(10)
        rx.start()
        rx.mode = "500"
        emit(10)
        wait_for(lambda: rx.requests >= 2, "retries against the 500s")
        rx.mode = "hang"
        emit(10)
        wait_for(lambda: len(rx.ids()) > 5, "a hung request")
        fwd.close()  # the proxy stops while the sink hangs: the rest stays in the spool
        rx.release.set()
        rx.mode = "ok"
        # A restarted proxy with the same sink finds the spool and delivers it first.
        transport2 = transport_for(rx, tmp_path)
        fwd = Forwarder(transport2, fast_config(tmp_path / "spool"), warn=lambda m: None)
        emit(8)
        wait_for(lambda: set(sent) <= set(rx.ids()), "every event")
        fwd.close()
        got = rx.ids()
        assert set(got) == set(sent)  # nothing lost, nothing invented
        assert first_seen(got) == sent  # in order; duplicates are re-sends of the same id
        assert not rx.problems
        assert all(e["arguments"]["api_key"] == MASK for e in rx.events)
        assert all(e["masked"] == ["arguments.api_key"] for e in rx.events)
    finally:
        rx.close()


def test_spool_overflow_drops_oldest_and_reports_it(tmp_path):
    rx = Receiver("webhook")
    rx.refuse()
    try:
        transport = transport_for(rx, tmp_path)
        reported: list[EventsDropped] = []
        fwd = Forwarder(
            transport,
            fast_config(tmp_path / "spool", spool_max_bytes=8192),
            report=lambda e: reported.append(e),  # type: ignore[arg-type]
            warn=lambda m: None,
        )
        sent = []
        for i in range(200):
            ev = event(i)
            sent.append(ev.event_id)
            fwd.emit(ev)
        wait_for(lambda: bool(reported), "the overflow report")
        # Every event has left memory for the spool (and every overflow is reported) before
        # the expected count is taken: on a loaded machine the worker may still be spooling.
        stable: list[int] = []

        def settled() -> bool:
            stable.append(len(reported))
            time.sleep(0.05)
            return not fwd.queued and len(stable) > 5 and len(set(stable[-5:])) == 1

        wait_for(settled, "the forwarder to settle")
        for e in reported:  # the report itself goes through the sink like any event
            fwd.emit(e)
        rx.start()
        dropped = sum(e.dropped for e in reported)
        wait_for(
            lambda: len(set(rx.ids())) >= len(sent) - dropped + len(reported), "the spool's rest"
        )
        fwd.close()
        got = first_seen(rx.ids())
        kept = [i for i in got if i in set(sent)]
        assert kept == sent[len(sent) - len(kept) :]  # the newest survive, in order
        assert len(kept) == len(sent) - dropped
        assert {e.event_id for e in reported} <= set(got)
        assert all(e.sink.startswith("webhook http://127.0.0.1:") for e in reported)
    finally:
        rx.close()


def test_spool_survives_a_torn_line_and_keeps_its_cursor(tmp_path):
    s = Spool(tmp_path / "s", 1 << 20)
    s.append([b'{"n":1}\n', b'{"n":2}\n', b'{"n":3}\n'])
    lines, cursor = s.peek(2)
    assert lines == [b'{"n":1}', b'{"n":2}']
    s.commit(cursor)
    seg = next((tmp_path / "s").glob("seg-*.jsonl"))
    with seg.open("ab") as fh:
        fh.write(b'{"n":4')  # a crash mid-append
    s.close()
    s = Spool(tmp_path / "s", 1 << 20)
    lines, cursor = s.peek(10)
    assert lines == [b'{"n":3}']
    s.commit(cursor)
    assert s.empty
    s.close()


def test_two_proxies_get_their_own_slots_and_a_gone_ones_spool_is_adopted(tmp_path):
    rx = Receiver("webhook")
    rx.refuse()
    try:
        a = Forwarder(transport_for(rx, tmp_path), fast_config(tmp_path / "sp"), warn=print)
        b = Forwarder(transport_for(rx, tmp_path), fast_config(tmp_path / "sp"), warn=print)
        assert a.spool.dir != b.spool.dir
        ev_a, ev_b = event(1), event(2)
        a.emit(ev_a)
        b.emit(ev_b)
        wait_for(lambda: not a.spool.empty and not b.spool.empty, "both spooled")
        a.close()  # proxy a is gone, its events undelivered
        rx.start()
        wait_for(lambda: {ev_a.event_id, ev_b.event_id} <= set(rx.ids()), "b delivers a's too")
        b.close()
    finally:
        rx.close()


def test_masking_covers_keys_token_formats_and_urls():
    d = event_dict(
        ToolCallEvent(
            correlation_id="c",
            agent_id="a",
            archetype="shell",
            tool="run",
            arguments={
                "command": "curl -H 'Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123' "
                "https://bob:hunter2@example.com/x --password=s3cr3t",
                "env": {"GITHUB_TOKEN": "ghp_" + "a" * 36, "HOME": "/home/b"},
                "aws": ["AKIAABCDEFGHIJKLMNOP"],
                "path": "/w/readme.md",
            },
            decision="allow",
            rule="",
            reason="",
            policy_version="v",
        )
    )
    m = mask_event(d)
    text = json.dumps(m)
    for secret in ("abcdefghijklmnopqrstuvwxyz0123", "hunter2", "s3cr3t", "ghp_", "AKIA"):
        assert secret not in text
    assert m["arguments"]["path"] == "/w/readme.md" and m["arguments"]["env"]["HOME"] == "/home/b"
    assert set(m["masked"]) == {
        "arguments.command",
        "arguments.env.GITHUB_TOKEN",
        "arguments.aws[0]",
    }
    assert d["arguments"]["aws"] == ["AKIAABCDEFGHIJKLMNOP"]  # the recording's copy is untouched
    clean = event_dict(ServerExit(server_pid=1, returncode=0))
    assert mask_event(clean) is clean


def test_splunk_token_from_file_env_or_argv(tmp_path, monkeypatch):
    tok = tmp_path / "tok"
    tok.write_text("from-file\n")
    monkeypatch.setenv("HEC_TOK", "from-env")
    monkeypatch.setenv("MCPD_SPLUNK_TOKEN", "default-env")
    assert split_splunk(f"https://h:8088:@{tok}") == ("https://h:8088", "from-file")
    assert split_splunk("https://h:8088:env:HEC_TOK") == ("https://h:8088", "from-env")
    assert split_splunk("https://h:8088/services/collector/event:lit") == (
        "https://h:8088/services/collector/event",
        "lit",
    )
    assert split_splunk("https://h:8088") == ("https://h:8088", "default-env")


def test_tls_is_verified_unless_the_ca_is_given(tmp_path):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    rx = Receiver("webhook")
    try:
        assert rx._server is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        rx._server.socket = ctx.wrap_socket(rx._server.socket, server_side=True)
        url = rx.url.replace("http://", "https://")
        secret = tmp_path / "secret"
        secret.write_bytes(WEBHOOK_SECRET)
        untrusted = transports(SinkOptions(webhook=[url], webhook_secret_file=str(secret)))[0]
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            untrusted.send([b'{"event_id":"x"}'])
        assert rx.ids() == []
        trusted = transports(
            SinkOptions(webhook=[url], webhook_secret_file=str(secret), ca_file=str(cert))
        )[0]
        trusted.send([b'{"event_id":"y"}'])
        assert rx.ids() == ["y"]
    finally:
        rx.close()


def spooled_ids(fwd: Forwarder) -> list[str]:
    """The event ids in a forwarder's spool, oldest first (what a restart would deliver)."""
    lines = b"".join(p.read_bytes() for p in sorted(fwd.spool.dir.glob("seg-*.jsonl")))
    return [json.loads(x)["event_id"] for x in lines.splitlines()]


def test_events_reach_the_disk_spool_while_a_request_hangs(tmp_path):
    """The sender stuck in a request that never ends holds up neither `emit` nor the spool:
    what is emitted meanwhile is on disk (a crash would not lose it)."""
    import socket

    from mcp_defense.events.sinks.http import Webhook

    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # the kernel accepts; nobody ever answers
    url = f"http://127.0.0.1:{hang.getsockname()[1]}/hook"
    try:
        fwd = Forwarder(Webhook(url, timeout=WAIT), fast_config(tmp_path / "sp"), warn=lambda m: 0)
        first = event(0)
        fwd.emit(first)
        wait_for(lambda: spooled_ids(fwd) == [first.event_id], "the first event spooled")
        sent = [first.event_id]
        for i in range(1, 50):  # the sender is now inside its (hanging) request
            ev = event(i)
            sent.append(ev.event_id)
            fwd.emit(ev)
        wait_for(lambda: spooled_ids(fwd) == sent, "every event spooled during the hang")
        assert fwd.delivered == 0
        fwd.close()  # warns that delivery is in progress; the spool keeps everything
        assert spooled_ids(fwd) == sent
    finally:
        hang.close()


def test_a_full_memory_queue_drops_the_oldest_and_reports_it(tmp_path):
    """Between `emit` and the spool at most `memory_max_events` wait; past that the oldest
    are dropped, counted, and reported as events_dropped once the spooler runs."""
    rx = Receiver("webhook")
    rx.refuse()
    try:
        reported: list[EventsDropped] = []
        fwd = Forwarder(
            transport_for(rx, tmp_path),
            fast_config(tmp_path / "sp", flush_s=3600.0, memory_max_events=5),
            report=lambda e: reported.append(e),  # type: ignore[arg-type]
            warn=lambda m: None,
        )
        sent = []
        for i in range(8):  # the spooler sleeps until close(): nothing leaves memory
            ev = event(i)
            sent.append(ev.event_id)
            fwd.emit(ev)
        assert fwd.queued == 5
        fwd.close()
        assert spooled_ids(fwd) == sent[3:]  # the newest, in order
        assert [(e.dropped, "in-memory" in e.reason) for e in reported] == [(3, True)]
    finally:
        rx.close()


def test_close_delivers_what_was_just_emitted(tmp_path):
    """Events wait in memory for at most one spooler period; close() does not wait for it."""
    rx = Receiver("webhook")
    try:
        fwd = Forwarder(
            transport_for(rx, tmp_path),
            fast_config(tmp_path / "sp", flush_s=3600.0, close_timeout_s=WAIT),
            warn=lambda m: None,
        )
        sent = []
        for i in range(3):
            ev = event(i)
            sent.append(ev.event_id)
            fwd.emit(ev)
        fwd.close()
        assert rx.ids() == sent
        assert spooled_ids(fwd) == []
    finally:
        rx.close()


def test_a_sink_line_is_the_masked_event_and_the_recorded_event_is_untouched():
    from mcp_defense.events.mask import masked
    from mcp_defense.events.record import event_line
    from mcp_defense.events.sinks.forwarder import encode

    ev = event(1)
    args_before = dict(ev.arguments)
    line = encode(ev)
    expected = mask_event(event_dict(ev))
    assert json.loads(line) == expected
    assert line == (json.dumps(expected, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    assert expected["masked"] == ["arguments.api_key"]
    assert ev.arguments == args_before and ev.masked == []  # what the recording writes
    m = masked(ev)
    assert m is not ev and m.event_id == ev.event_id and m.decision_id == ev.decision_id
    clean = ServerExit(server_pid=1, returncode=0)
    assert masked(clean) is clean and encode(clean) == event_line(clean)
    plain = event(2)
    plain.arguments = {"path": "/w/readme.md"}
    assert masked(plain) is plain


def test_a_forwarder_makes_young_collections_rarer_than_a_ticks_worth_of_events(tmp_path):
    """Queued events live until the spooler's next tick; the youngest generation's threshold
    is raised above that, so they do not set off collections (a proxy without a sink has
    none). A threshold already higher, or collection disabled (0), is left alone."""
    import gc

    from mcp_defense.events.sinks.forwarder import GC_YOUNG_THRESHOLD

    rx = Receiver("webhook")
    saved = gc.get_threshold()
    try:
        for start, expected in ((700, GC_YOUNG_THRESHOLD), (10**6, 10**6), (0, 0)):
            gc.set_threshold(start, saved[1], saved[2])
            fwd = Forwarder(transport_for(rx, tmp_path), fast_config(tmp_path / "sp"))
            fwd.close()
            assert gc.get_threshold() == (expected, saved[1], saved[2])
    finally:
        gc.set_threshold(*saved)
        rx.close()


def _decide_one(recorder, workspace: Path):
    """A real session over the built-in pack, after it decided one tools/call (id 7)."""
    from mcp_defense.policy.loader import load
    from mcp_defense.proxy.session import ProxySession

    table = load(None, {"workspace": str(workspace)}).table
    assert table is not None
    s = ProxySession(archetype="filesystem", get_table=lambda: table, recorder=recorder)
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": str(workspace / "a.txt")}},
    }
    s.client_message(json.dumps(call).encode())
    return s


def _one_call(recorder, workspace: Path) -> tuple[float, float]:
    """One tools/call decided and answered; returns the wall-clock window around it."""
    t0 = time.time()
    s = _decide_one(recorder, workspace)
    t1 = time.time()
    result = {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "x"}]}}
    s.server_message(json.dumps(result).encode())
    return t0, t1


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def test_sinks_alone_build_the_call_events_off_the_call_path_once_for_all(tmp_path):
    """With only SIEM forwarders, a call's events are built by the sinks' threads (not on
    the call's path), once: both sinks get the same event ids, stamped at decision time."""
    from mcp_defense.events.record import Recorder

    a, b = Receiver("webhook"), Receiver("splunk")
    try:
        fa = Forwarder(transport_for(a, tmp_path), fast_config(tmp_path / "sa"), warn=print)
        fb = Forwarder(transport_for(b, tmp_path), fast_config(tmp_path / "sb"), warn=print)
        rec = Recorder([fa, fb])
        t0, t1 = _one_call(rec, tmp_path)
        rec.close()
        assert [e["type"] for e in a.events] == ["tool_call", "tool_result"]
        assert a.ids() == b.ids()
        call = a.events[0]
        assert call["tool"] == "read_file" and call["decision"] == "allow"
        assert call["request_id"] == 7 and a.events[1]["request_id"] == 7
        assert call["correlation_id"] == a.events[1]["correlation_id"]
        assert t0 - 1.0 <= _epoch(call["ts"]) <= t1 + 1.0
    finally:
        a.close()
        b.close()


def test_a_recording_beside_a_sink_gets_the_call_event_before_the_call_goes_on(tmp_path):
    from mcp_defense.events.record import JsonlWriter, Recorder

    a = Receiver("webhook")
    try:
        path = tmp_path / "rec.jsonl"
        fwd = Forwarder(transport_for(a, tmp_path), fast_config(tmp_path / "sa"), warn=print)
        writer = JsonlWriter(str(path))
        rec = Recorder([writer, fwd])
        _decide_one(rec, tmp_path)
        recorded = [json.loads(x) for x in path.read_text().splitlines()]
        assert [e["type"] for e in recorded] == ["tool_call"]  # written before forwarding
        rec.close()
        assert a.ids() == [recorded[0]["event_id"]]
    finally:
        a.close()
