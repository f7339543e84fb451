"""Low-level file helpers shared by the store, the event log and the index:
id validation, whole writes, all-or-nothing appends of lines, atomic
replacement, and locks.

Every write of the package goes through `write_all`, so a test can make the
disk "full" at any step by patching that one function.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import secrets
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

#: Opening inside a folder written by task code: never through a link.
OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_id(task_id: object) -> str | None:
    """The canonical (lowercase) form of a UUID string, or None.

    Ids are checked before any path is built, so `../etc`, `abc` or an id with
    a trailing newline can never name a file. UUIDs are case-insensitive on
    input (RFC 4122), so an uppercase id names the same task as its lowercase
    form.
    """
    if not isinstance(task_id, str) or len(task_id) != 36 or not task_id.isascii():
        return None
    lowered = task_id.lower()
    return lowered if _UUID.fullmatch(lowered) else None


#: Random bytes for new ids, fetched 4 KB at a time (see `new_uuid`).
_random = threading.local()


def new_uuid() -> str:
    """A random UUID4 string, as ``str(uuid.uuid4())`` but with one
    getrandom syscall per 256 ids instead of one each (each syscall hands
    the GIL to another thread under load). The pool is per thread, and a
    forked child starts with none (see below), so no id is handed out twice."""
    pool = getattr(_random, "pool", b"")
    if not pool:
        pool = os.urandom(4096)
    _random.pool = pool[16:]
    return str(uuid.UUID(bytes=pool[:16], version=4))


def _forget_random() -> None:
    global _random
    _random = threading.local()


def dumps(obj: Any) -> bytes:
    """Compact JSON as bytes. ASCII-escaped so any string (even a lone
    surrogate) can be stored; values JSON cannot hold are written as text
    rather than failing a running task."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode("ascii")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


#: Temp names are unique without a syscall per write: a random prefix per
#: process (so a dead process's leftovers never collide) and a counter.
_TMP_PREFIX = secrets.token_hex(6)
_tmp_numbers = itertools.count()


def _new_tmp_prefix() -> None:
    global _TMP_PREFIX
    _TMP_PREFIX = secrets.token_hex(6)


# dramatiq forks its worker processes: each must make names and ids of its own.
os.register_at_fork(after_in_child=_new_tmp_prefix)
os.register_at_fork(after_in_child=_forget_random)


def atomic_write(path: Path, data: bytes | Iterable[bytes], *, fsync: bool = False) -> None:
    """Replace `path` with `data` (bytes, or chunks of bytes written as they
    come) so readers see the old or the new content, never a mix: write a
    temp file in the same folder, then rename it over."""
    tmp = path.with_name(f".{path.name}.{_TMP_PREFIX}{next(_tmp_numbers)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            if isinstance(data, bytes):
                write_all(fd, data)
            else:
                _write_chunks(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_chunks(fd: int, chunks: Iterable[bytes], size: int = 1 << 20) -> None:
    pending: list[bytes] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= size:
            write_all(fd, b"".join(pending))
            pending, held = [], 0
    if pending:
        write_all(fd, b"".join(pending))


def complete_size(fd: int, size: int, block: int = 16384) -> int:
    """Where the last whole line of the first `size` bytes of `fd` ends (just
    past its newline); 0 if there is none. Usually one 1-byte read: a file
    that ends with a newline ends there."""
    if size > 0 and os.pread(fd, 1, size - 1) == b"\n":
        return size  # the usual case, without reading a whole block
    end = size
    while end > 0:
        start = max(end - block, 0)
        at = os.pread(fd, end - start, start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def append_lines(fd: int, data: bytes) -> None:
    """Append `data` (whole lines) to an O_APPEND file opened for reading
    too, all of it or nothing. Caller holds the file's lock.

    A line counts once its newline is written: readers skip what follows
    the last newline. So the bytes after it, left by a writer that died
    mid-line (no live writer holds the lock), are cut off first, and a write
    that fails midway (a full disk) is cut back to where it started: the
    file never keeps a torn line in its middle, and a failed append frees
    the space it took.
    """
    size = os.fstat(fd).st_size
    end = complete_size(fd, size)
    if end < size:
        os.ftruncate(fd, end)
    try:
        write_all(fd, data)
    except BaseException:
        try:
            os.ftruncate(fd, end)
        except OSError:
            pass  # the next append cuts the torn tail off instead
        raise


#: In-process half of the per-task lock: flock excludes other processes (and
#: other open file descriptions), the stripe keeps this process's threads from
#: piling onto flock. Stripes bound memory however many tasks a process sees;
#: no caller ever holds two task locks, so sharing a stripe cannot deadlock.
_STRIPES = [threading.Lock() for _ in range(64)]


@contextmanager
def flocked(lock_path: Path, thread_lock: threading.Lock) -> Iterator[None]:
    """Hold `thread_lock` and an exclusive flock on `lock_path` (created if
    needed; FileNotFoundError if its folder is gone)."""
    with thread_lock:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def task_lock(folder: Path, task_id: str):
    """The lock that serialises every change to one task (state and log)."""
    return flocked(folder / ".lock", _STRIPES[hash(task_id) % len(_STRIPES)])
