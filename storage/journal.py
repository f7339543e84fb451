"""Reading the index journal (``index.jsonl``) into an `IndexTable`, whole
or from an offset, a block at a time, so a 40 MB journal is never held in
memory at once and a process that is up to date only reads what was added.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterator

from .table import IndexTable

_CHUNK = 1 << 20  # parse this many bytes of lines per json.loads call


def record_of(state: dict) -> dict:
    """The index record for a task state."""
    return {"id": state["task_id"], "status": state["status"],
            "created_at": state["created_at"], "completed_at": state.get("completed_at")}


def _batches(data: bytes, end: int) -> Iterator[list]:
    """The JSON values on the lines of data[:end] (whole lines), in batches.

    A batch of lines is parsed by one json.loads call as an array, which is
    several times faster than a call per line; a batch that fails is parsed
    line by line so the bad line raises ValueError.
    """
    pos = 0
    while pos < end:
        stop = data.rfind(b"\n", pos, min(pos + _CHUNK, end)) + 1
        if stop <= pos:
            stop = data.find(b"\n", pos, end) + 1
        chunk = data[pos:stop]
        try:
            yield json.loads(b"[" + chunk[:-1].replace(b"\n", b",") + b"]")
        except ValueError:
            yield [json.loads(line) for line in chunk.split(b"\n") if line.strip()]
        pos = stop


def consume(read: Callable[[int], bytes], table: IndexTable) -> tuple[int, int]:
    """Apply the whole lines `read(n)` yields until it returns b"", a block at
    a time (so a 40 MB journal never sits in memory at once). Returns the
    bytes consumed (up to the last newline) and the number of lines.
    ValueError on an invalid line."""
    consumed = lines = 0
    carry = b""
    while True:
        block = read(_CHUNK)
        if not block:
            return consumed, lines
        data = carry + block
        end = data.rfind(b"\n") + 1
        for batch in _batches(data, end):
            table.apply_many(batch)
        consumed += end
        lines += data.count(b"\n", 0, end)
        carry = data[end:]


class Snapshot:
    """A loaded index file and how far into it this process has read."""

    __slots__ = ("table", "handle", "ino", "offset", "lines")

    def __init__(self, table: IndexTable, handle, offset: int, lines: int):
        self.table, self.handle, self.offset, self.lines = table, handle, offset, lines
        self.ino = os.fstat(handle.fileno()).st_ino

    def tail(self, size: int) -> bool:
        """Apply the whole lines added up to `size`; False on an invalid line."""
        fd, start = self.handle.fileno(), self.offset
        position = start

        def read(n: int) -> bytes:
            nonlocal position
            block = os.pread(fd, min(n, size - position), position) if position < size else b""
            position += len(block)
            return block

        try:
            consumed, lines = consume(read, self.table)
        except ValueError:
            return False
        self.offset = start + consumed
        self.lines += lines
        return True
