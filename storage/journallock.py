"""The index journal's lock, its descriptor kept open between appends.

Opening and closing the lock file for every record cost two syscalls per
created task, and under load each syscall hands the GIL to another thread
while the index lock is held, so every appender queues behind it. The
descriptor is read-only (flock needs no more): a descriptor open for writing
would keep the data folder's file system from being remounted read-only.
The journal itself is opened per append, for the same reason.

flock belongs to an open file description, which a forked child shares with
its parent: a child (dramatiq forks its worker processes) therefore opens a
descriptor of its own before it locks anything.
"""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class JournalLock:
    """The exclusive lock on `lock_path`, against this process's threads
    and other processes."""

    def __init__(self, lock_path: Path):
        self.lock_path = str(lock_path)
        self._thread_lock = threading.Lock()  # flock does not exclude this process's own threads
        self._pid = os.getpid()
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock (FileNotFoundError if its folder is gone)."""
        with self._thread_lock:
            if self._pid != os.getpid():  # a forked child: the descriptor is its parent's
                self._forget_parents()
            if self._fd is None:
                self._fd = os.open(self.lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _forget_parents(self) -> None:
        """Close the copy a fork gave us (the parent's flock stays: it is
        released only when every copy is closed) and start afresh."""
        if self._fd is not None:
            os.close(self._fd)
        self._pid, self._fd = os.getpid(), None

    def close(self) -> None:
        """Close the descriptor (it is opened again when needed)."""
        with self._thread_lock:
            fd, self._fd = self._fd, None
            if fd is not None and self._pid == os.getpid():
                os.close(fd)
