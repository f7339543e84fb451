"""The store's exceptions, and turning an OSError into a message that says
what failed and what the operator can do about it."""

from __future__ import annotations

import errno
from pathlib import Path


class StorageError(Exception):
    """The data folder could not be read or written (disk full, permissions…)."""


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
    errno.ENOSPC: "no space left on device; free disk space in the data directory and retry",
    errno.EDQUOT: "disk quota exceeded; free space or raise the quota and retry",
    errno.EACCES: "permission denied; make the data directory writable by the service's user",
    errno.EPERM: "operation not permitted; make the data directory writable by the service's user",
    errno.EROFS: "the file system is read-only; point AIPYTHON_DATA_DIR at a writable directory",
    errno.EMFILE: "too many open files; raise the process's file limit (ulimit -n)",
}


def storage_error(action: str, exc: OSError, path: Path | str | None = None) -> StorageError:
    """A StorageError for `exc` raised while doing `action` (e.g. "create task")."""
    where = path if path is not None else exc.filename
    reason = _ADVICE.get(exc.errno or 0) or f"{exc.strerror or exc}; check the data directory"
    suffix = f" ({where})" if where else ""
    error = StorageError(f"cannot {action}: {reason}{suffix}")
    error.__cause__ = exc
    return error
