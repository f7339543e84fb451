"""Following a task's event log as it grows, for live streams.

A cursor keeps the log open and remembers how far it has read, so each poll
costs one fstat when nothing changed and reads only the new bytes when
something did: a stream that stays open for a long task never re-reads the
events it already sent. A line without its newline yet is held back until the
writer finishes it, and the cursor stays at that line's start, reading it
again at the next poll: a writer may cut such a line off (it failed midway,
see `files.append_lines`), and what it writes next starts there. Such a line
exists only while a write is under way (or, after a writer died mid-line,
until the task's next append cuts it off), so re-reading it costs little.
"""

from __future__ import annotations

import os
from pathlib import Path

from .eventlog import parse_event


class EventCursor:
    """New events of one log, after a given seq, one poll at a time."""

    def __init__(self, path: Path, after: int = 0):
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._offset = 0  # just past the last whole line read
        self.last_seq = after

    def poll(self) -> list[dict]:
        """The events appended since the last poll (with seq > the last seen)."""
        size = os.fstat(self._fd).st_size
        if size <= self._offset:
            return []
        data = os.pread(self._fd, size - self._offset, self._offset)
        whole = data.rfind(b"\n") + 1
        self._offset += whole
        events = []
        for raw in data[:whole].split(b"\n"):
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
