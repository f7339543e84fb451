"""TaskStore: the tasks of the service as plain files, shared by every web and
worker process that sees the same data folder.

    <root>/tasks/<task_id>/task.json     the state, replaced atomically
    <root>/tasks/<task_id>/events.jsonl  the event log, append-only
    <root>/tasks/index.jsonl             the listing index (see index.py)
    <root>/trash/                        tasks being deleted (see trash.py)
    <root>/workspaces/<task_id>/         the task's working directory: its
                                         files are the task's artifacts

The workspaces are a tree apart from the state, so code given its own
workspace can reach no task.json, log, index or other task; the folders'
modes and the upgrade of a 1.0.0 data folder are in layout.py.

Each change to one task (state or log) happens under that task's lock (an
flock on ``<task>/.lock`` plus a thread lock), so transitions are checked
against the current state and event seqs have no gaps, across threads and
processes. The event is written before the state that depends on it, so a
reader who sees a finished state also finds the task_end event; a state left
behind its log's task_end (a crash or a full disk between the two writes)
follows the log at the task's next change (see changes.py). Reading one
task touches only its folder, so it costs the same with 100 or 100,000 tasks;
listing, recovery and cleanup go through the index and never scan folders,
and only `workspace`, `create` and deleting touch the workspaces.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from . import eventlog, files, layout, workspace_copy
from .changes import StatusChanges
from .errors import DamagedTask, StorageError, TaskNotFound, storage_error
from .files import canonical_id
from .follow import EventCursor
from .index import TaskIndex
from .journal import record_of
from .queries import IndexedQueries
from .results import build_result
from .statecache import CachedState, StateCache
from .states import new_state, state_problem
from .times import format_ts, system_clock
from .trash import Trash
from .uploads import WorkspaceUploads

log = logging.getLogger("aipy.storage")
T = TypeVar("T")

#: A folder without task.json this much older than now is the remains of a
#: process killed mid-create, not a create in progress; it is removed.
ORPHAN_AGE_S = 600.0


class TaskStore(IndexedQueries, StatusChanges, WorkspaceUploads):
    """All tasks under one data folder."""

    def __init__(self, root: Path | str, *, clock: Callable[[], datetime] = system_clock,
                 new_id: Callable[[], str] = files.new_uuid, fsync: bool = False,
                 workspaces: Path | str | None = None):
        """Open (creating or upgrading) the data folder `root`. `workspaces`
        is where the task workspaces live (default ``<root>/workspaces``);
        `clock` (default: UTC now) and `new_id` (default: uuid4) are there for
        tests; `fsync` (default False) flushes every write to the disk."""
        self.root = Path(root)
        self.tasks_dir = self.root / "tasks"
        self._tasks_path = str(self.tasks_dir)
        self.trash_dir = self.root / "trash"
        self.workspaces_dir = Path(workspaces) if workspaces is not None else self.root / "workspaces"
        self._clock = clock
        self._new_id = new_id
        self._fsync = fsync
        self._umask = layout.read_umask()  # as at open: a process that changes it later opens a new store
        self._states = StateCache()
        try:
            layout.prepare(self.root, self.workspaces_dir)
            workspace_trash = layout.workspace_trash(self.trash_dir, self.workspaces_dir)
        except OSError as exc:
            raise storage_error("open the data directory", exc, self.root) from exc
        self._trash = Trash(self.tasks_dir, self.workspaces_dir, self.trash_dir, workspace_trash)
        self.index = TaskIndex(self.tasks_dir, self._read_or_none, self._discard_orphan, fsync=fsync)
        try:
            self.index.ensure_file()
        except OSError as exc:
            raise storage_error("create the task index", exc, self.index.path) from exc

    # -- paths and guards ------------------------------------------------------

    def _folder(self, task_id: object) -> tuple[str, Path]:
        """The canonical id and folder; TaskNotFound before any path is built."""
        canonical = canonical_id(task_id)
        if canonical is None:
            raise TaskNotFound(task_id)
        return canonical, self.tasks_dir / canonical

    @contextmanager
    def _guard(self, action: str, task_id: str) -> Iterator[None]:
        """Map OS errors: a vanished file means a vanished task."""
        try:
            yield
        except (FileNotFoundError, NotADirectoryError):
            raise TaskNotFound(task_id) from None
        except OSError as exc:
            raise storage_error(f"{action} for task {task_id}", exc) from exc

    def _now(self) -> str:
        return format_ts(self._clock())

    def _read(self, task_id: str, folder: Path) -> dict:
        return self._parse(task_id, folder / "task.json", (folder / "task.json").read_bytes())

    def _parse(self, task_id: str, path: Path | str, raw: bytes) -> dict:
        try:
            state = json.loads(raw)
        except ValueError:
            raise DamagedTask(f"task {task_id}: {path} is not valid JSON; "
                              "restore it or delete the task folder") from None
        problem = state_problem(state, task_id)
        if problem:
            raise DamagedTask(f"task {task_id}: {path} {problem}; "
                              "restore it or delete the task folder")
        return state

    def _read_or_none(self, task_id: str) -> dict | None:
        try:
            return self._read(task_id, self.tasks_dir / task_id)
        except (OSError, StorageError):
            return None

    def _write(self, folder: Path, state: dict) -> None:
        files.atomic_write(folder / "task.json", files.dumps(state), fsync=self._fsync)

    def _append(self, folder: Path, events: list[tuple[str, dict]]) -> None:
        eventlog.append_many(folder / "events.jsonl", events, self._now(), fsync=self._fsync)

    def _journal(self, records: list[dict]) -> None:
        """Index records for changes already on disk: the folders stay right
        if this fails, and the index repairs itself (see index.py)."""
        try:
            self.index.append(records)
        except OSError as exc:
            log.error("Task index not updated (%s); it will be repaired from the task folders", exc)

    # -- one task ----------------------------------------------------------------

    def create(self, instruction: str, metadata: dict | None = None, options: dict | None = None,
               *, extra: dict | None = None) -> dict:
        """Make a pending task: all of it, or (on any failure) none of it."""
        task_id = canonical_id(self._new_id())
        if task_id is None:
            raise ValueError("new_id must return a UUID string")
        state = new_state(task_id, instruction, self._now(), metadata, options, extra)
        folder = self.tasks_dir / task_id
        try:
            os.mkdir(folder, layout.STATE_MODE)
        except OSError as exc:  # nothing made: an existing folder is another task's
            raise storage_error("create task", exc, folder) from exc
        # The state folder comes first: a process killed before task.json is
        # written leaves a folder without it, which the index's repair pass
        # removes with the workspace (see _discard_orphan).
        try:
            layout.fix_mode(folder, layout.STATE_MODE, self._umask)
            layout.make_dir(self.workspaces_dir / task_id, layout.WORKSPACE_MODE, self._umask)
            os.close(os.open(folder / "events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
            self._write(folder, state)
            self.index.append([record_of(state)])
        except BaseException as exc:
            self._trash.delete(task_id)
            if isinstance(exc, OSError):
                raise storage_error("create task", exc, folder) from exc
            raise
        return state

    def get(self, task_id: object) -> dict:
        """The task's state, fresh: one stat while task.json is unchanged."""
        entry, state = self._cached(task_id)
        return state if state is not None else entry.state()

    def get_view(self, task_id: object, render: Callable[[dict], T]) -> T:
        """`render(state)` of the task's fresh state, rendered once per
        version of task.json (a module-level function: it keys the cache)."""
        return self._cached(task_id)[0].view(render)

    def _cached(self, task_id: object) -> tuple[CachedState, dict | None]:
        if (canonical := canonical_id(task_id)) is None:
            raise TaskNotFound(task_id)
        path = f"{self._tasks_path}/{canonical}/task.json"  # a str: pathlib costs more than the stat
        try:  # not _guard: a context manager costs as much as the stat
            return self._states.read(canonical, path, lambda raw: self._parse(canonical, path, raw))
        except (FileNotFoundError, NotADirectoryError):
            raise TaskNotFound(canonical) from None
        except OSError as exc:
            raise storage_error(f"read the state for task {canonical}", exc) from exc

    def workspace(self, task_id: object) -> Path:
        """The task's workspace, ``<workspaces>/<id>``; TaskNotFound when the
        task is gone. The workspace is looked for before the state because a
        delete renames them the other way round: a task whose state is found
        after its workspace was had both at that moment."""
        canonical, folder = self._folder(task_id)
        path = self.workspaces_dir / canonical
        if not path.is_dir() or not (folder / "task.json").is_file():
            raise TaskNotFound(task_id)
        return path

    def copy_workspace(self, source_id: object, target_id: object) -> int:
        """Copy a task's files into another's fresh workspace (a follow-up,
        see workspace_copy.py); how many files were copied."""
        source, target = self.workspace(source_id), self.workspace(target_id)
        try:
            return workspace_copy.copy_tree(str(source), str(target))
        except OSError as exc:
            raise storage_error("copy the previous task's files", exc, target) from exc

    def events_path(self, task_id: object) -> Path:
        canonical, folder = self._folder(task_id)
        if not (folder / "events.jsonl").is_file():
            raise TaskNotFound(task_id)
        return folder / "events.jsonl"

    def append_event(self, task_id: object, type: str, content: dict) -> dict:
        """Append one event with the next seq and return it."""
        canonical, folder = self._folder(task_id)
        with self._guard("append an event", canonical), files.task_lock(folder, canonical):
            return eventlog.append(folder / "events.jsonl", type, content, self._now(), fsync=self._fsync)

    def read_events(self, task_id: object, after: int = 0) -> list[dict]:
        canonical, folder = self._folder(task_id)
        with self._guard("read the events", canonical):
            return eventlog.read(folder / "events.jsonl", after)

    def follow_events(self, task_id: object, after: int = 0) -> EventCursor:
        """A cursor that yields the task's new events as they are appended."""
        canonical, folder = self._folder(task_id)
        with self._guard("follow the events", canonical):
            return EventCursor(folder / "events.jsonl", after)

    def is_cancel_requested(self, task_id: object) -> bool:
        """Polled every 100 ms per running task: one stat while task.json is
        unchanged (see `get`)."""
        return bool(self.get(task_id).get("cancel_requested"))

    def result(self, task_id: object) -> dict:
        """The result body. The state is read first: events only grow, so the
        log read after it is at least as complete as the state says."""
        state = self.get(task_id)
        return build_result(state, self.read_events(state["task_id"]))

    def delete(self, task_id: object) -> None:
        """Remove one task, its state and its workspace, whatever its status
        (e.g. when it could not be queued)."""
        canonical, _ = self._folder(task_id)
        with self._guard("delete", canonical):
            taken = self._trash.take(canonical)
        if taken.state is not None:
            self._journal([{"id": canonical, "status": "deleted"}])
        self._trash.remove(taken)  # a workspace alone too: its task was gone already
        if taken.state is None:
            raise TaskNotFound(task_id)

    def _discard_orphan(self, task_id: str) -> None:
        """Remove what a task that is not there left behind: a state folder
        without task.json (a process killed mid-create; only once it is
        ORPHAN_AGE_S old, as a younger one may be a create in progress) with
        its workspace, or the workspace of a state folder that is gone."""
        folder = self.tasks_dir / task_id
        try:
            if time.time() - folder.stat().st_mtime < ORPHAN_AGE_S or (folder / "task.json").exists():
                return
        except FileNotFoundError:
            pass  # deleted: a workspace left behind is an orphan
        except OSError:
            return
        try:
            taken = self._trash.take(task_id)
        except OSError:
            return
        if taken.state is not None or taken.workspace is not None:
            what = "a state folder without task.json" if taken.state is not None else "a workspace without its task"
            log.warning("Removed the remains of task %s: %s (an interrupted create or delete)", task_id, what)
        self._trash.remove(taken)

    def check(self) -> None:
        """Health: the data folder exists, is writable and has space left."""
        layout.check_writable(self.tasks_dir, self.workspaces_dir)

    def close(self) -> None:
        """Release the index file this process keeps open."""
        self.index.close()
