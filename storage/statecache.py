"""This process's cache of task states, so reading an unchanged task costs
one ``stat``: reading and parsing task.json anew is the slow part of a
status request under load.

An entry is keyed by the file's identity (inode, mtime, ctime, size). Every
write replaces task.json (a new inode), so an unchanged identity means
unchanged bytes, whichever process wrote them. Beside the bytes an entry
keeps what callers rendered from them (the API's status JSON), so a repeated
status read renders nothing either.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

#: Entries kept before the cache starts over (a few MB at most).
STATE_CACHE_SIZE = 4096


class CachedState:
    """task.json as read once: its bytes, and views rendered from it."""

    __slots__ = ("key", "raw", "views")

    def __init__(self, key: tuple, raw: bytes):
        self.key = key
        self.raw = raw
        self.views: dict[Callable[[dict], Any], Any] = {}

    def state(self) -> dict:
        """A new dict each time: callers may change theirs."""
        return json.loads(self.raw)

    def view(self, render: Callable[[dict], Any]) -> Any:
        """`render(state)`, computed once per version of the file. Two
        threads may both render it the first time; they get equal results."""
        try:
            return self.views[render]
        except KeyError:
            value = self.views[render] = render(self.state())
            return value


class StateCache:
    """Task id -> the last task.json read, up to `limit` entries (default
    STATE_CACHE_SIZE). Safe to share between threads: entries are only
    ever replaced whole."""

    def __init__(self, limit: int = STATE_CACHE_SIZE):
        self.limit = limit
        self._entries: dict[str, CachedState] = {}

    def read(self, task_id: str, path: str, parse: Callable[[bytes], dict]) -> tuple[CachedState, dict | None]:
        """The entry for the file at `path` as it is now, and the state if
        the file had to be read (`parse` checks it; its errors propagate),
        else None. OSError (FileNotFoundError: no such task) propagates."""
        stat = os.stat(path)
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        entry = self._entries.get(task_id)
        if entry is not None and entry.key == key:
            return entry, None
        with open(path, "rb") as handle:
            raw = handle.read()
        state = parse(raw)
        entry = CachedState(key, raw)
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[task_id] = entry
        return entry, state
