"""Slots: the folders a warm kernel is started in before its task is known.

A slot is a folder `.warm-*` beside the task workspaces (so a rename moves
it into place). The bubblewrap tier binds it into the kernel's sandbox at
its own path, which the task's code then sees as its workspace: when a task
takes the kernel, the slot and the task's workspace folder swap names in
one step (`exchange`), and the old workspace folder stays at the slot's
path, as the mount point of the task's later blocks, until the task ends.

Whoever uses a slot holds an exclusive flock on it; a slot nobody holds is
left over from a process that died, and `sweep` removes it. Several worker
processes may share the workspaces folder, so a slot is never removed on
its name alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

PREFIX = ".warm-"

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def make(folder: Path) -> tuple[Path, int]:
    """A new slot in `folder` (mode 0700), and the fd that holds its lock."""
    slot = Path(tempfile.mkdtemp(prefix=PREFIX, dir=folder)).resolve()
    try:
        return slot, hold(slot)
    except OSError:
        shutil.rmtree(slot, ignore_errors=True)
        raise


def hold(slot: Path) -> int:
    """Lock `slot` for this process (raises BlockingIOError when another
    holds it); close the fd to let go."""
    fd = os.open(slot, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def keep(slot: Path) -> int:
    """Lock `slot` as `hold` does, making it again if a sweep has just
    taken it away (it only marks a place); raises OSError."""
    for _ in range(3):
        try:
            return hold(slot)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(slot, 0o700)
        except BlockingIOError:  # a sweep holds it for the moment it takes to remove it
            time.sleep(0.01)
    return hold(slot)


def exchange(a: Path, b: Path) -> None:
    """Swap the names of folders `a` and `b` atomically, so that at no
    moment is either name missing (a reader of the workspace never finds
    it gone). Raises OSError; where the file system cannot swap (EINVAL,
    ENOSYS), three renames do it, with a moment in which `b` is missing."""
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code), str(a))
    aside = a.with_name(a.name + ".swap")
    os.rename(b, aside)
    try:
        os.rename(a, b)
    except OSError:
        os.rename(aside, b)
        raise
    os.rename(aside, a)


def sweep(folder: Path) -> int:
    """Remove the slots in `folder` that no living process holds; how many."""
    removed = 0
    try:
        names = [name for name in os.listdir(folder) if name.startswith(PREFIX)]
    except OSError:
        return 0
    for name in names:
        slot = folder / name
        try:
            fd = hold(slot)
        except OSError:  # held by a live process, or gone already
            continue
        try:
            # Taken, then let go, between our listing and our lock: the name
            # may now be another folder than the one we locked.
            if os.fstat(fd).st_ino != os.stat(slot, follow_symlinks=False).st_ino:
                continue
            shutil.rmtree(slot, ignore_errors=True)
            removed += 1
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed
