"""The store's exceptions, and turning an OSError into a message that says
what failed and what the operator can do about it."""

from __future__ import annotations

import errno
from pathlib import Path


class StorageError(Exception):
    """The data folder could not be read or written (disk full, permissions…)."""


class StorageFull(StorageError):
    """No space left on the device holding the data folder (ENOSPC), or the
    quota is used up (EDQUOT). It passes once space is freed, so a write
    that failed this way is worth trying again later."""


class StorageReadOnly(StorageError):
    """The data folder cannot be written: a read-only file system (EROFS) or
    missing permissions (EACCES, EPERM). It passes when an operator fixes it."""


class DamagedTask(StorageError):
    """A task's files are unreadable (not JSON, wrong shape): trying again
    cannot help; the task needs restoring or deleting."""


class TaskNotFound(StorageError):
    """No task with this id (including ids that are not canonical UUIDs)."""

    def __init__(self, task_id: object):
        self.task_id = task_id
        super().__init__(f"Task {task_id} not found")


class InvalidTransition(StorageError):
    """A status change the state machine forbids (e.g. leaving a finished state)."""

    def __init__(self, task_id: str, current: str, target: str):
        self.task_id = task_id
        self.current = current
        self.target = target
        super().__init__(f"Task {task_id} is {current}; it cannot become {target}")


_ADVICE = {
    errno.ENOSPC: "no space left on device: the device holding the data folder is full; free disk space there and retry",
    errno.EDQUOT: "disk quota exceeded; free space or raise the quota and retry",
    errno.EACCES: "permission denied; make the data directory writable by the service's user",
    errno.EPERM: "operation not permitted; make the data directory writable by the service's user",
    errno.EROFS: "the file system is read-only; point AIPYTHON_DATA_DIR at a writable directory",
    errno.EMFILE: "too many open files; raise the process's file limit (ulimit -n)",
}


_KINDS = {
    errno.ENOSPC: StorageFull, errno.EDQUOT: StorageFull,
    errno.EROFS: StorageReadOnly, errno.EACCES: StorageReadOnly, errno.EPERM: StorageReadOnly,
}


def storage_error(action: str, exc: OSError, path: Path | str | None = None) -> StorageError:
    """A StorageError for `exc` raised while doing `action` (e.g. "create task"):
    a StorageFull or StorageReadOnly when the errno says which, so callers
    can tell a full disk (wait for space) from a broken one."""
    where = path if path is not None else exc.filename
    reason = _ADVICE.get(exc.errno or 0) or f"{exc.strerror or exc}; check the data directory"
    suffix = f" ({where})" if where else ""
    error = _KINDS.get(exc.errno or 0, StorageError)(f"cannot {action}: {reason}{suffix}")
    error.__cause__ = exc
    return error
