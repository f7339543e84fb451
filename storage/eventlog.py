"""The per-task event log: ``events.jsonl``, one JSON object per line.

Appends are single ``write`` calls on an O_APPEND descriptor, made under the
task's lock, so ``tail -f`` sees whole lines as soon as they are written. A
writer killed mid-line leaves a torn last line: readers skip it, and the next
append first ends it with a newline so it stays a separate invalid line.
The next ``seq`` comes from the last *valid* line, found by reading the file
backwards from its end in blocks, so appending costs the same whatever the
log's length.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import files

_BLOCK = 16384


def parse_event(raw: bytes) -> dict | None:
    """The event on one line, or None if the line is not a valid event."""
    if not raw.strip():
        return None
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict):
        return None
    seq = event.get("seq")
    if type(seq) is not int or seq < 1 or not isinstance(event.get("type"), str):
        return None
    return event


def last_seq(fd: int, size: int) -> int:
    """The seq of the last valid event in the first `size` bytes of `fd`, or 0."""
    pos = size
    carry = b""  # the start of a line whose beginning is further back
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        chunk = os.pread(fd, step, pos) + carry
        lines = chunk.split(b"\n")
        carry = lines.pop(0) if pos > 0 else b""
        for raw in reversed(lines):
            event = parse_event(raw)
            if event is not None:
                return event["seq"]
    return 0


def append(path: Path, kind: str, content: Any, timestamp: str, *, fsync: bool = False) -> dict:
    """Append one event with the next seq; the caller holds the task's lock.

    The log is opened without O_CREAT: a missing log means a missing task
    (FileNotFoundError), never a fresh log in a deleted folder.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        event = {"seq": last_seq(fd, size) + 1, "type": kind, "timestamp": timestamp, "content": content}
        files.append_fixing_torn_tail(fd, files.dumps(event) + b"\n")
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return event


def read(path: Path, after: int = 0) -> list[dict]:
    """The valid events with seq > `after`, in file order. Invalid lines (a
    torn last line, or one a dead writer left mid-file) are skipped."""
    with open(path, "rb") as handle:
        data = handle.read()
    events = []
    for raw in data.split(b"\n"):
        event = parse_event(raw)
        if event is not None and event["seq"] > after:
            events.append(event)
    return events
