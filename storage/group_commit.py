"""Group commit: many threads' appends to one file written together.

Every created task journals one index line under the journal's lock (see
index.py). One writer at a time: under load, threads queue on that lock,
and each of them then pays its own open, write and close, each syscall
handing the GIL around. Instead, a thread that finds a write in progress
adds its line to the next batch and waits; when the write ends, one of the
waiting threads writes the whole next batch in one go. Nobody returns
before their line is written (a list right after a submit shows the
task), and a failed write fails every caller in its batch alike (the
write is all or nothing, see files.append_lines).
"""

from __future__ import annotations

import threading
from typing import Callable


class _Batch:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.done = False
        self.error: BaseException | None = None


class GroupCommit:
    """Calls `write(data)` with the joined data of the callers of `append`
    that arrived while the previous call ran."""

    def __init__(self, write: Callable[[bytes], None]):
        self._write = write
        self._cond = threading.Condition()
        self._busy = False
        self._next = _Batch()

    def append(self, data: bytes) -> None:
        """Return once `data` is written; raise what its batch's write raised."""
        with self._cond:
            batch = self._next
            batch.parts.append(data)
            while self._busy and not batch.done:
                self._cond.wait()
            lead = not batch.done  # nobody writes: this thread writes its batch
            if lead:
                self._busy = True
                self._next = _Batch()
        if lead:
            try:
                self._write(b"".join(batch.parts))
            except BaseException as exc:
                batch.error = exc
            finally:
                with self._cond:
                    batch.done = True
                    self._busy = False
                    self._cond.notify_all()
        if batch.error is not None:
            raise batch.error
