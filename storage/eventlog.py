"""The per-task event log: ``events.jsonl``, one JSON object per line.

Appends are single ``write`` calls on an O_APPEND descriptor, made under the
task's lock, so ``tail -f`` sees whole lines as soon as they are written.

A line counts once its newline is written. Readers skip whatever follows the
last newline (a line being written, or one torn by a writer that died), and
an append first cuts such a tail off and, if its own write fails midway (a
full disk), cuts the file back to where it was (`files.append_lines`). So
the log never holds a torn line in its middle, a failed append leaves no
trace, and seqs never repeat: the next ``seq`` comes from the last whole
line, found by reading the file backwards from its end in blocks, so
appending costs the same whatever the log's length.

The ``task_end`` event is the commit point of a task's end: the store writes
it before the final task.json and, when the two disagree (a crash or a full
disk between them), makes task.json follow the log (see `find_end`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from . import files

_BLOCK = 16384
#: A task_end event's type as it appears in a line (spaces allowed, for
#: lines some other tool wrote). Inside a JSON string the quotes would be
#: escaped, so text that merely mentions it does not match.
_END_MARK = re.compile(rb'"type"\s*:\s*"task_end"')


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
    """The seq of the last valid event in the first `size` bytes of `fd`
    (which end with a newline, or are empty), or 0."""
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
    """Append one event with the next seq; the caller holds the task's lock."""
    return append_many(path, [(kind, content)], timestamp, fsync=fsync)[-1]


def append_many(path: Path, events: Iterable[tuple[str, Any]], timestamp: str, *, fsync: bool = False) -> list[dict]:
    """Append events with consecutive seqs in one write, all or none of
    them; the caller holds the task's lock.

    The log is opened without O_CREAT: a missing log means a missing task
    (FileNotFoundError), never a fresh log in a deleted folder.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
    try:
        seq = last_seq(fd, files.complete_size(fd, os.fstat(fd).st_size))
        written = []
        for kind, content in events:
            seq += 1
            written.append({"seq": seq, "type": kind, "timestamp": timestamp, "content": content})
        files.append_lines(fd, b"".join(files.dumps(event) + b"\n" for event in written))
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return written


def read(path: Path, after: int = 0) -> list[dict]:
    """The valid events with seq > `after`, in file order. Invalid lines (one
    an older version left mid-file after a torn write) and the bytes after
    the last newline are skipped."""
    with open(path, "rb") as handle:
        data = handle.read()
    events = []
    for raw in data[:data.rfind(b"\n") + 1].split(b"\n"):
        event = parse_event(raw)
        if event is not None and event["seq"] > after:
            events.append(event)
    return events


def find_end(path: Path) -> dict | None:
    """The last task_end event of the log, or None (also for an empty log,
    at the cost of one stat). Only lines that carry the task_end type are
    parsed, so a log of many megabytes is searched at memory speed."""
    if os.stat(path).st_size == 0:
        return None
    with open(path, "rb") as handle:
        data = handle.read()
    complete = data.rfind(b"\n") + 1
    for mark in reversed(list(_END_MARK.finditer(data, 0, complete))):
        start = data.rfind(b"\n", 0, mark.start()) + 1
        event = parse_event(data[start:data.find(b"\n", mark.end())])
        if event is not None and event["type"] == "task_end":
            return event
    return None
