"""Following a task's event log as it grows, for live streams.

A cursor keeps the log open and remembers how far it has read, so each poll
costs one fstat when nothing changed and reads only the new bytes when
something did: a stream that stays open for a long task never re-reads the
events it already sent. A line without its newline yet is held back until the
writer finishes it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .eventlog import parse_event


class EventCursor:
    """New events of one log, after a given seq, one poll at a time."""

    def __init__(self, path: Path, after: int = 0):
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._offset = 0
        self._partial = b""
        self.last_seq = after

    def poll(self) -> list[dict]:
        """The events appended since the last poll (with seq > the last seen)."""
        size = os.fstat(self._fd).st_size
        if size <= self._offset:
            return []
        data = self._partial + os.pread(self._fd, size - self._offset, self._offset)
        self._offset = size
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" after a complete line
        events = []
        for raw in lines:
            event = parse_event(raw)
            if event is not None and event["seq"] > self.last_seq:
                events.append(event)
                self.last_seq = event["seq"]
        return events

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "EventCursor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
