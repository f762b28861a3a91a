"""JSONL flow source: the published tool's FlowEvent lines from a file or a FIFO.

An external producer (an XDP/eBPF bridge, a packet tap) writes one JSON object per line:

  {"timestamp": "2026-04-24T12:00:00+00:00", "src_ip": "10.0.0.5", "dst_ip": "1.2.3.4",
   "src_port": 50001, "dst_port": 443, "protocol": 6, "classification": "MALICIOUS",
   "action": "DROP", "confidence": 87, "cgroup_id": 1234567, "source_pid": 4242}

A bad line is reported with its line number and skipped; the source goes on, because one
garbled line from a producer must not blind the correlator. Files and FIFOs are followed
like `tail -f` (a FIFO is reopened when its writer goes away; a truncated or rotated file is
read again from its start).
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from mcp_defense.correlate.sources import ErrorSink, FlowSink, FlowSource
from mcp_defense.policy.facts import FlowFacts

MAX_LINE = 1 << 20  # a longer "line" is a producer bug or an attack on our memory
_CHUNK = 1 << 16

_IP_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


class LineFollower:
    """Yields (line number, line bytes) from a regular file or FIFO until `stop` is set.

    `follow=False` ends at the first end of file (a regular file's end, or a FIFO's writer
    closing). Reports oversize lines and I/O trouble through `report`, never raises.
    """

    def __init__(
        self,
        path: str,
        stop: threading.Event,
        report: Callable[[str], None],
        *,
        follow: bool = True,
        poll_s: float = 0.05,
    ) -> None:
        self.path = path
        self.stop = stop
        self.report = report
        self.follow = follow
        self.poll_s = poll_s
        self.lineno = 0
        self._skipping = False

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        missing_reported = False
        while not self.stop.is_set():
            try:
                st = os.stat(self.path)
            except OSError as e:
                if not self.follow:
                    self.report(f"{self.path}: cannot open: {e.strerror}")
                    return
                if not missing_reported:
                    self.report(f"{self.path}: cannot open ({e.strerror}); waiting for it")
                    missing_reported = True
                self.stop.wait(self.poll_s)
                continue
            if stat.S_ISFIFO(st.st_mode):
                yield from self._fifo()
            else:
                yield from self._file()
            return

    # A FIFO: nonblocking open (a blocking one would wait for a writer and ignore stop()),
    # read only when poll() says so; EOF (writer gone) -> reopen and wait for the next one.
    def _fifo(self) -> Iterator[tuple[int, bytes]]:
        buf = bytearray()
        while not self.stop.is_set():
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN | select.POLLHUP)
                while not self.stop.is_set():
                    if not poller.poll(int(self.poll_s * 1000) or 1):
                        continue
                    try:
                        chunk = os.read(fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        # The writer closed: its last line is complete even without "\n".
                        yield from self._rest(buf)
                        break
                    yield from self._lines(buf, chunk)
            finally:
                os.close(fd)
            if not self.follow:
                break

    def _file(self) -> Iterator[tuple[int, bytes]]:
        buf = bytearray()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            ino = os.fstat(fd).st_ino
            pos = 0
            while not self.stop.is_set():
                chunk = os.read(fd, _CHUNK)
                if chunk:
                    pos += len(chunk)
                    yield from self._lines(buf, chunk)
                    continue
                if not self.follow:
                    break
                self.stop.wait(self.poll_s)
                try:
                    now = os.stat(self.path)
                except OSError:
                    continue  # rotated away; the new file may appear
                if now.st_ino != ino or now.st_size < pos:
                    try:
                        new_fd = os.open(self.path, os.O_RDONLY)
                    except OSError:
                        continue
                    if now.st_ino != ino:  # rotated: first drain what the old file still has
                        while chunk := os.read(fd, _CHUNK):
                            yield from self._lines(buf, chunk)
                    # Whatever is still buffered was a line cut short.
                    yield from self._rest(buf)
                    os.close(fd)
                    fd, ino, pos = new_fd, os.fstat(new_fd).st_ino, 0
                    self.lineno = 0
                    self.report(
                        f"{self.path}: file was rotated or truncated; reading it from its start"
                    )
        finally:
            os.close(fd)
        if not self.follow:  # at EOF; when following we only get here on stop(), where a
            yield from self._rest(buf)  # partial line is one still being written

    def _lines(self, buf: bytearray, chunk: bytes) -> Iterator[tuple[int, bytes]]:
        if self._skipping:  # inside a line already reported as too long: drop to its end
            nl = chunk.find(b"\n")
            if nl < 0:
                return
            chunk = chunk[nl + 1 :]
            self._skipping = False
            self.lineno += 1
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            self.lineno += 1
            line = bytes(buf[start:nl])
            start = nl + 1
            if len(line) > MAX_LINE:
                self.report(
                    f"{self.path}:{self.lineno}: line longer than {MAX_LINE} bytes; skipped"
                )
                continue
            yield self.lineno, line
        del buf[:start]
        if len(buf) > MAX_LINE:
            self.report(
                f"{self.path}:{self.lineno + 1}: line longer than {MAX_LINE} bytes; skipped"
            )
            buf.clear()
            self._skipping = True

    def _rest(self, buf: bytearray) -> Iterator[tuple[int, bytes]]:
        if self._skipping:
            self._skipping = False
            self.lineno += 1
        elif buf.strip():
            self.lineno += 1
            line = bytes(buf)
            buf.clear()
            yield self.lineno, line
        buf.clear()


# -- the FlowEvent line format -----------------------------------------------------------


def parse_timestamp(value: Any) -> float:
    """ISO 8601 / RFC 3339 (any fraction length, `Z` or an offset) or epoch seconds -> epoch."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be a string or a number")
    if isinstance(value, int | float):
        ts = float(value)
        if ts > 1e17:  # nanoseconds, as some eBPF producers write
            ts /= 1e9
        elif ts > 1e14:  # microseconds
            ts /= 1e6
        elif ts > 1e11:  # milliseconds
            ts /= 1e3
        return ts
    if not isinstance(value, str):
        raise ValueError("timestamp must be a string or a number")
    text = value.strip()
    # Python 3.11 accepts at most 6 fraction digits; Tetragon writes 9.
    dot = text.find(".")
    if dot >= 0:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        text = text[: min(end, dot + 7)] + text[end:]
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {value!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return dt.timestamp()


def parse_ip(value: Any, field: str) -> str:
    """A textual IP address, normalised (IPv4-mapped IPv6 becomes IPv4, as rules expect)."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    try:
        ip = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        raise ValueError(f"{field} {value!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def parse_port(value: Any, field: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"{field} must be a port number (0-65535), got {value!r}")
    return value


def parse_protocol(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError("protocol must be an IP protocol number or name")
    if isinstance(value, int):
        return _IP_PROTOCOLS.get(value, str(value))
    if isinstance(value, str) and value.strip():
        name = value.strip().lower().removeprefix("ipproto_")
        return _IP_PROTOCOLS.get(int(name), name) if name.isdigit() else name
    raise ValueError("protocol must be an IP protocol number or name")


def _optional_id(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{field} must be a non-negative integer or null, got {value!r}")
    return value


def parse_flow_event(obj: Any) -> FlowFacts:
    """One FlowEvent object -> FlowFacts; ValueError says what is wrong with it."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    missing = [
        k
        for k in ("timestamp", "src_ip", "dst_ip", "src_port", "dst_port", "protocol")
        if k not in obj
    ]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    binary = obj.get("binary", "")
    return FlowFacts(
        src_ip=parse_ip(obj["src_ip"], "src_ip"),
        src_port=parse_port(obj["src_port"], "src_port"),
        dst_ip=parse_ip(obj["dst_ip"], "dst_ip"),
        dst_port=parse_port(obj["dst_port"], "dst_port"),
        protocol=parse_protocol(obj["protocol"]),
        pid=_optional_id(obj.get("source_pid"), "source_pid"),
        cgroup_id=_optional_id(obj.get("cgroup_id"), "cgroup_id"),
        binary=binary if isinstance(binary, str) else "",
        ts=parse_timestamp(obj["timestamp"]),
    )


def json_lines(
    source: FlowSource, path: str, follow: bool, poll_s: float
) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line of a followed file; a line that is
    not JSON is reported with its file:line and skipped, so one bad line never stops a source."""
    lines = LineFollower(path, source._stop, source._report, follow=follow, poll_s=poll_s)
    for lineno, raw in lines:
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            source._report(f"{path}:{lineno}: bad JSON: {e.msg} (column {e.colno})")
            continue
        except (UnicodeDecodeError, RecursionError):
            source._report(f"{path}:{lineno}: bad JSON: not UTF-8 or nested too deep")
            continue
        yield lineno, obj


class JsonlSource(FlowSource):
    """FlowEvent JSONL from a file or FIFO (see the module docstring)."""

    def __init__(
        self,
        path: str,
        *,
        on_error: ErrorSink | None = None,
        follow: bool = True,
        poll_s: float = 0.05,
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"jsonl:{path}", on_error=on_error)
        self.path = path
        self.follow = follow
        self.poll_s = poll_s

    def _run(self, sink: FlowSink) -> None:
        for lineno, obj in json_lines(self, self.path, self.follow, self.poll_s):
            try:
                flow = parse_flow_event(obj)
            except ValueError as e:
                self._report(f"{self.path}:{lineno}: bad flow: {e}")
                continue
            self._deliver(sink, flow)
