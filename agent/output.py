"""A running block's pipes, read as data arrives into capped captures.

Code may print without end, so nothing here grows with what it writes: each
capture keeps its first bytes and only counts the rest, and the pipes are
read with a selector rather than one thread each.
"""

from __future__ import annotations

import os
import selectors
import time
from typing import IO


class OutputCapture:
    """Keeps the first `cap` bytes of a stream but counts everything, so the
    child can be drained forever without the server's memory growing."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.total = 0
        self.chunks: list[bytes] = []

    def add(self, data: bytes) -> None:
        room = self.cap - min(self.total, self.cap)
        if room > 0:
            self.chunks.append(data[:room])
        self.total += len(data)

    def data(self) -> bytes:
        """The bytes kept."""
        return b"".join(self.chunks)

    def text(self) -> str:
        """The bytes kept as text, with a note of what was cut."""
        return capped_text(self.data().decode("utf-8", errors="replace"), self.total, self.cap)


def capped_text(kept: str, total: int, cap: int) -> str:
    """`kept`, the first `cap` bytes of `total`, with a note of what was cut."""
    if total > cap:
        kept += f"\n[... output truncated: {total} bytes total, first {cap} kept ...]"
    return kept


class Pipes:
    """The pipes of one block, each read into its own capture until it
    reaches EOF."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def add(self, pipe: IO[bytes], capture: OutputCapture) -> None:
        self._selector.register(pipe, selectors.EVENT_READ, capture)

    @property
    def open(self) -> bool:
        """Does any pipe still await its EOF?"""
        return bool(self._selector.get_map())

    def read(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for data, then read what came."""
        for key, _ in self._selector.select(max(timeout, 0.0)):
            self._read(key)

    def drain(self, for_s: float) -> None:
        """Read what is already written, for at most `for_s` seconds: bounded,
        since a process that escaped the kill could keep writing forever."""
        until = time.monotonic() + for_s
        while self.open and time.monotonic() < until:
            ready = self._selector.select(0)
            if not ready:
                return
            for key, _ in ready:
                self._read(key)

    def close(self) -> None:
        """Stop watching the pipes (closing them is their owner's job)."""
        self._selector.close()

    def _read(self, key: selectors.SelectorKey) -> None:
        try:
            data = os.read(key.fd, 65536)
        except ConnectionResetError:  # a socket whose peer died with our data unread: its end
            data = b""
        if data:
            key.data.add(data)
        else:
            self._selector.unregister(key.fileobj)
