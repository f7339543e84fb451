"""Idempotency keys: a repeated `Idempotency-Key` finds the first task.

    <root>/idempotency/<sha256 of the key>   holds the task id

A key is claimed by hard-linking a file holding the new task's id into place:
`link` fails if the name exists, so of two requests racing with one key
exactly one wins, across threads and processes. A key whose task is gone
(cleaned up after `max_age_hours`) is free again, which makes the retention
window of keys the same as that of tasks; the cleanup prunes their files.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

from . import files, layout
from .errors import storage_error


class IdempotencyKeys:
    def __init__(self, root: Path | str):
        """The keys of the data folder `root`, in ``<root>/idempotency/``
        (mode 0700, made if missing; see layout.py)."""
        self.folder = Path(root) / "idempotency"
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            layout.ensure_dir(self.folder, layout.STATE_MODE)
        except OSError as exc:
            raise storage_error("create the idempotency folder", exc, self.folder) from exc

    def _path(self, key: str) -> Path:
        return self.folder / hashlib.sha256(key.encode()).hexdigest()

    def claim(self, key: str, task_id: str) -> str | None:
        """Give `key` to `task_id`; None when it was free, else the id of the
        task that holds it already."""
        path = self._path(key)
        fd, temp = tempfile.mkstemp(dir=self.folder, prefix=".claim-")
        try:
            files.write_all(fd, task_id.encode())
            os.close(fd)
            fd = -1
            try:
                os.link(temp, path)
                return None
            except FileExistsError:
                return path.read_text().strip() or None
        except OSError as exc:
            raise storage_error("record the idempotency key", exc, path) from exc
        finally:
            if fd >= 0:
                os.close(fd)
            os.unlink(temp)

    def reassign(self, key: str, task_id: str) -> None:
        """Give a key whose task is gone to a new task (StorageError if the
        disk refuses: the key then still names the gone task, so it is free)."""
        path = self._path(key)
        try:
            files.atomic_write(path, task_id.encode())
        except OSError as exc:
            raise storage_error("record the idempotency key", exc, path) from exc

    def release(self, key: str, task_id: str) -> None:
        """Free `key` if `task_id` holds it (its task could not be queued)."""
        path = self._path(key)
        try:
            if path.read_text().strip() == task_id:
                path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error("free the idempotency key", exc, path) from exc

    def prune(self, max_age_hours: float) -> int:
        """Remove keys older than the task retention; returns how many."""
        cutoff = time.time() - max_age_hours * 3600
        removed = 0
        with os.scandir(self.folder) as entries:
            for entry in entries:
                try:
                    if entry.is_file() and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed
