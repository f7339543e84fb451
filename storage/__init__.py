"""The file-based task store: one folder per task with its state and its
append-only event log, a listing index, and apart from them the tasks'
workspaces. It knows nothing of HTTP or Dramatiq (see store.py, index.py and
layout.py for the design)."""

from .errors import InvalidTransition, StorageError, TaskNotFound
from .states import FINISHED, STATUSES
from .store import TaskStore
from .times import format_ts, utc_now_iso

__all__ = [
    "FINISHED",
    "STATUSES",
    "InvalidTransition",
    "StorageError",
    "TaskNotFound",
    "TaskStore",
    "format_ts",
    "utc_now_iso",
]
