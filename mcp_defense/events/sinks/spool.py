"""A bounded on-disk queue of event lines: what a sink has not delivered yet.

Every event a forwarder takes goes through its spool (a write-ahead log), so an event is
delivered in order, once the sink answers, even after the proxy was restarted. Segments
(`seg-NNNN.jsonl`) are appended to and deleted once delivered; `cursor` holds the first
undelivered (segment, offset). Over `max_bytes` the oldest segments are dropped and the
count is returned, so the caller reports it (never silent). One process owns a spool at a
time (`flock` on `lock`); several proxies with the same sink get one slot each.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

SEGMENT_PREFIX = "seg-"


class SpoolBusy(OSError):
    """Another process holds this spool slot."""


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(4096, max_bytes // 8)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(self._lock_fd)
            raise SpoolBusy(f"spool {directory} is in use") from e
        self.segments = sorted(
            int(p.name[len(SEGMENT_PREFIX) : -len(".jsonl")])
            for p in directory.glob(f"{SEGMENT_PREFIX}*.jsonl")
        )
        self.read_seg, self.read_off = self._load_cursor()
        self.segments = [s for s in self.segments if s >= self.read_seg] or [self.read_seg]
        for s in list(directory.glob(f"{SEGMENT_PREFIX}*.jsonl")):
            if self._seg_no(s) < self.read_seg:
                s.unlink(missing_ok=True)
        self._sizes = {s: self._repair(s) for s in self.segments}

    @staticmethod
    def _seg_no(p: Path) -> int:
        return int(p.name[len(SEGMENT_PREFIX) : -len(".jsonl")])

    def _path(self, seg: int) -> Path:
        return self.dir / f"{SEGMENT_PREFIX}{seg:012d}.jsonl"

    def _load_cursor(self) -> tuple[int, int]:
        try:
            seg, off = (self.dir / "cursor").read_text().split()
            return int(seg), int(off)
        except (OSError, ValueError):
            return (self.segments[0] if self.segments else 1), 0

    def _save_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        tmp.write_text(f"{self.read_seg} {self.read_off}\n")
        os.replace(tmp, self.dir / "cursor")

    def _repair(self, seg: int) -> int:
        """Cut a torn last line (a crash mid-append) so every line is a whole event."""
        path = self._path(seg)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1
        if end != len(data):
            os.truncate(path, end)
        return end

    @property
    def pending_bytes(self) -> int:
        return sum(self._sizes.values()) - self.read_off

    @property
    def empty(self) -> bool:
        return self.pending_bytes <= 0

    def append(self, lines: list[bytes]) -> int:
        """Append whole lines (each ending in a newline); return how many old events were
        dropped to stay under `max_bytes`."""
        if not lines:
            return 0
        i = 0
        while i < len(lines):
            seg = self.segments[-1]
            if self._sizes.get(seg, 0) >= self.segment_bytes:
                seg += 1
                self.segments.append(seg)
                self._sizes[seg] = 0
            room = self.segment_bytes - self._sizes.get(seg, 0)
            chunk: list[bytes] = []
            while i < len(lines) and (not chunk or room > 0):
                chunk.append(lines[i])
                room -= len(lines[i])
                i += 1
            self._write(seg, b"".join(chunk))
        return self._enforce_limit()

    def _write(self, seg: int, data: bytes) -> None:
        fd = os.open(self._path(seg), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        self._sizes[seg] = self._sizes.get(seg, 0) + len(data)

    def _enforce_limit(self) -> int:
        dropped = 0
        while self.pending_bytes > self.max_bytes and len(self.segments) > 1:
            seg = self.segments.pop(0)
            try:
                with self._path(seg).open("rb") as fh:
                    fh.seek(self.read_off)
                    dropped += fh.read().count(b"\n")
            except FileNotFoundError:
                pass
            self._path(seg).unlink(missing_ok=True)
            del self._sizes[seg]
            self.read_seg, self.read_off = self.segments[0], 0
            self._save_cursor()
        return dropped

    def peek(
        self, max_events: int, max_bytes: int = 4 << 20
    ) -> tuple[list[bytes], tuple[int, int]]:
        """Up to `max_events` oldest undelivered lines (without newlines) and the cursor after
        them, to `commit` once delivered. Never crosses a segment boundary."""
        while self.read_off >= self._sizes.get(self.read_seg, 0) and len(self.segments) > 1:
            self._path(self.read_seg).unlink(missing_ok=True)
            self._sizes.pop(self.read_seg, None)
            self.segments.pop(0)
            self.read_seg, self.read_off = self.segments[0], 0
            self._save_cursor()
        size = self._sizes.get(self.read_seg, 0)
        if self.read_off >= size:
            return [], (self.read_seg, self.read_off)
        with self._path(self.read_seg).open("rb") as fh:
            fh.seek(self.read_off)
            data = fh.read(min(size - self.read_off, max_bytes))
        end = data.rfind(b"\n") + 1
        if end == 0:  # one line longer than max_bytes: take it whole
            with self._path(self.read_seg).open("rb") as fh:
                fh.seek(self.read_off)
                data = fh.readline()
            end = len(data)
        lines = data[:end].split(b"\n", max_events)  # splits no further than it must
        if len(lines) > max_events:
            lines = lines[:max_events]
            end = sum(len(x) + 1 for x in lines)
        else:
            lines.pop()  # the empty rest after the last newline
        return lines, (self.read_seg, self.read_off + end)

    def commit(self, cursor: tuple[int, int]) -> None:
        self.read_seg, self.read_off = cursor
        if self.read_off >= self._sizes.get(self.read_seg, 0) and len(self.segments) == 1:
            # All delivered: start the segment over so the spool does not grow forever.
            self._path(self.read_seg).unlink(missing_ok=True)
            self.read_seg += 1
            self.read_off = 0
            self.segments = [self.read_seg]
            self._sizes = {self.read_seg: 0}
        self._save_cursor()

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def remove(self) -> None:
        """Delete an emptied spool (an adopted slot of a proxy that is gone)."""
        for p in self.dir.iterdir():
            p.unlink(missing_ok=True)
        self.close()
        try:
            self.dir.rmdir()
        except OSError:
            pass
