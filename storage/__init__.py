"""The file-based task store: one folder per task with its state and its
append-only event log, a listing index, and apart from them the tasks'
workspaces. It knows nothing of HTTP or Dramatiq (see store.py, changes.py,
eventlog.py, index.py and layout.py for the design)."""

from .errors import DamagedTask, InvalidTransition, StorageError, StorageFull, StorageReadOnly, TaskNotFound
from .states import FINISHED, STATUS_FIELDS, STATUSES, Status, end_content
from .idempotency import IdempotencyKeys
from .results import callback_state, shown_url
from .store import TaskStore
from .uploads import UploadConflict
from .times import format_ts, parse_ts, system_clock, utc_now_iso

__all__ = [
    "FINISHED",
    "STATUSES",
    "STATUS_FIELDS",
    "Status",
    "DamagedTask",
    "IdempotencyKeys",
    "InvalidTransition",
    "StorageError",
    "StorageFull",
    "StorageReadOnly",
    "TaskNotFound",
    "TaskStore",
    "UploadConflict",
    "callback_state",
    "end_content",
    "format_ts",
    "parse_ts",
    "shown_url",
    "system_clock",
    "utc_now_iso",
]
