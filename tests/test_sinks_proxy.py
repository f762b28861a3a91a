"""`mcp-defense stdio` with all three SIEM sinks, a recording and an audit log: events of a
run whose sinks were down are delivered by the next run; every recorded event reaches every
sink (matched by event_id), in order; the audit chain head reaches them too."""

from __future__ import annotations

import time

from support.sink_receivers import HEC_TOKEN, WEBHOOK_SECRET, Receiver
from support.stdio_helpers import RAW_SERVER, Proc, call, child_env, proxy_argv, read_events

from mcp_defense.events.audit import verify


def first_seen(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def test_events_survive_a_proxy_restart_while_the_sinks_were_down(tmp_path):
    rxs = [Receiver("splunk"), Receiver("webhook"), Receiver("otlp")]
    secret = tmp_path / "secret"
    secret.write_bytes(WEBHOOK_SECRET)
    rec = tmp_path / "rec.jsonl"
    audit = tmp_path / "audit.jsonl"
    flags = [
        "--record",
        str(rec),
        "--audit-log",
        str(audit),
        "--siem-splunk",
        f"{rxs[0].url}:env:TEST_HEC_TOKEN",
        "--siem-webhook",
        rxs[1].url,
        "--webhook-secret-file",
        str(secret),
        "--otlp",
        rxs[2].url,
        "--spool-dir",
        str(tmp_path / "spool"),
        "--sink-timeout",
        "0.5",
        "--sink-retry-max",
        "0.1",
    ]
    env_extra = {"TEST_HEC_TOKEN": HEC_TOKEN}
    try:
        for rx in rxs:
            rx.refuse()
        for run in range(2):
            env = {**child_env(), **env_extra}
            p = Proc(proxy_argv(RAW_SERVER, *flags), tmp_path, env=env)
            try:
                p.initialize()
                for i in range(1, 12):
                    args = {"path": "/workspace/a.py", "token": "ghp_" + "s" * 36}
                    p.request(call(i, "read_file", args))
                p.request(call(99, "read_file", {"path": "/home/alice/.ssh/id_rsa"}))
                p.close_stdin()
                assert p.wait() == 0
            finally:
                p.kill()
            if run == 0:
                assert "failed" in p.stderr() and "kept in" in p.stderr()
                for rx in rxs:
                    assert rx.ids() == []
                    rx.start()
        recorded = [e["event_id"] for e in read_events(rec)]
        assert len(recorded) >= 2 * 14
        deadline = time.monotonic() + 30
        while any(not set(recorded) <= set(rx.ids()) for rx in rxs):
            assert time.monotonic() < deadline, [len(set(rx.ids())) for rx in rxs]
            time.sleep(0.02)
        v = verify(audit)
        assert v.intact and v.lines == len(recorded)
        for rx in rxs:
            assert not rx.problems, rx.problems
            got = [i for i in first_seen(rx.ids()) if i in set(recorded)]
            assert got == recorded  # every event, in the recording's order
            calls = [e for e in rx.events if e["type"] == "tool_call"]
            assert calls and all("ghp_" not in str(e["arguments"]) for e in calls)
            heads = [e for e in rx.events if e["type"] == "audit_head"]
            assert heads and heads[-1]["hash"] == v.head and heads[-1]["lines"] == v.lines
            denied = [e for e in calls if e["decision"] == "deny"]
            assert len(denied) == 2 and all(e["decision_id"] and e["eval_ms"] > 0 for e in calls)
    finally:
        for rx in rxs:
            rx.close()


def test_a_hanging_sink_does_not_hold_up_calls_or_exit(tmp_path):
    rx = Receiver("webhook")
    rx.mode = "hang"
    flags = [
        "--siem-webhook",
        rx.url,
        "--spool-dir",
        str(tmp_path / "spool"),
        "--sink-timeout",
        "0.3",
    ]
    try:
        p = Proc(proxy_argv(RAW_SERVER, *flags), tmp_path)
        try:
            p.initialize()
            for i in range(1, 40):  # every call answered while each delivery hangs
                assert "result" in p.request(call(i, "read_file", {"path": "/workspace/a.py"}))
            p.close_stdin()
            assert p.wait() == 0
            assert "kept in" in p.stderr()  # what the hung sink did not confirm waits
        finally:
            p.kill()
    finally:
        rx.close()
