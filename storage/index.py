"""The listing index: ``tasks/index.jsonl``, so no request scans task folders.

Why a journal file
    Listing, restart recovery and cleanup need every task's status and dates;
    reading 100,000 task.json files per request is out of the question. The
    task folders stay the truth; the index is a derived, append-only journal
    of small records, one line per change::

        {"id":"…","status":"running","created_at":"…","completed_at":null}
        {"id":"…","status":"deleted"}

    The store appends a record *after* the task.json it describes is written
    (create, every transition, delete), so the journal can lag the folders by
    a crash, never lead them. Instructions are not in it: a page's summaries
    come from the page's own task.json files.

Many processes, one file
    Appenders hold an exclusive flock on ``.index.lock`` and write whole lines
    in one ``write`` on an O_APPEND descriptor, all or nothing: a torn line a
    dead writer left is cut off first, and a write that fails midway (disk
    full) is cut back (see `files.append_lines`); readers only ever take
    lines up to the last newline. Each process loads the file once (lazily,
    on its first query, or at start via `TaskStore.load_index`) into an
    `IndexTable` (one packed int per task, ~18 MB for 100,000) and
    afterwards, on every query, ``stat``s the path: same inode and a larger
    size means "read just the new bytes from my offset"; another inode means
    the file was rewritten (compaction or rebuild) and is loaded again. The
    loaded file stays open so its inode cannot be reused behind our back.
    Other processes' creates, transitions and deletes are thus visible on the
    next call, for the price of one stat when nothing changed.

Merging
    Statuses only move forward (pending < running < finished < deleted), so a
    record never overrides one of higher rank: duplicate or late records
    (from repairs and rebuilds racing live writers) are harmless.

Rewrites
    *Compaction* (when the file has more than twice as many lines as live
    tasks, plus slack; checked at load and after cleanup) and *rebuild* (when
    the file is missing or has an invalid line — corruption, or a torn line
    that an older version ended with a newline — by reading every task.json,
    ~2-3 s for 100,000) write a new file and rename it over the old one
    while holding the lock, so no append is lost; appends wait meanwhile. An
    appender that finds no file skips its record: the next load rebuilds from
    the folders, which already hold the change.

Repairs
    The first load in a process walks the folder names (one ``scandir``, no
    file reads) and journals what a crash lost: folders the index lacks, and
    records whose folder is gone. Folders without a task.json, and the ids
    of gone folders (whose workspaces may remain), go to `discard_orphan`.
    Readers that find a task.json missing or with a newer status than the
    index says (a list page, recovery's candidates) journal that too.

Lock order: the in-memory mutex may be held while taking the file lock,
never the reverse.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Iterable

from . import files
from .files import canonical_id
from .group_commit import GroupCommit
from .journal import Snapshot, consume, record_of
from .journallock import JournalLock
from .table import IndexTable

log = logging.getLogger("aipy.storage")

INDEX_NAME = "index.jsonl"


class TaskIndex:
    """The journal file of one tasks folder, and this process's view of it."""

    #: Compact when the file has more lines than twice the live records plus this.
    COMPACT_SLACK = 10_000

    def __init__(self, tasks_dir: Path, read_state: Callable[[str], dict | None],
                 discard_orphan: Callable[[str], None], *, fsync: bool = False):
        self.dir = tasks_dir
        self.path = tasks_dir / INDEX_NAME
        self._lock_path = tasks_dir / ".index.lock"
        self._read_state = read_state          # task id -> state, None if unreadable
        self._discard_orphan = discard_orphan  # a folder without task.json, a gone task's workspace
        self._fsync = fsync
        self._mutex = threading.Lock()         # guards the snapshot
        self._lock = JournalLock(self._lock_path)  # its descriptor kept open: see journallock.py
        self._snap: Snapshot | None = None
        self._reconciled = False
        self._commits = GroupCommit(self._write)

    def _file_lock(self):
        return self._lock.held()

    # -- writing ---------------------------------------------------------

    def ensure_file(self) -> None:
        """Create an empty index for a store that has no tasks yet, so its
        first load need not scan; with folders present, loading rebuilds."""
        if self.path.exists():
            return
        with self._file_lock():
            if self.path.exists():
                return
            with os.scandir(self.dir) as entries:
                if any(canonical_id(entry.name) == entry.name for entry in entries):
                    return
            files.atomic_write(self.path, b"", fsync=self._fsync)

    def append(self, records: Iterable[dict]) -> None:
        """Journal records; OSError propagates (the caller knows the action).
        Appends from many threads at once are written together (see
        group_commit.py)."""
        data = b"".join(files.dumps(record) + b"\n" for record in records)
        if data:
            self._commits.append(data)

    def _write(self, data: bytes) -> None:
        with self._file_lock():
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            except FileNotFoundError:
                return  # the next load rebuilds from the folders, which hold this change
            try:
                files.append_lines(fd, data)
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def repair(self, records: list[dict]) -> None:
        """Merge what a reader found on disk, here and for every process."""
        if records:
            with self._mutex:
                if self._snap is not None:
                    self._snap.table.apply_many(records)
            try:
                self.append(records)
            except OSError as exc:  # best effort: the next reader finds the lag again
                log.warning("Task index repair not saved: %s", exc)

    # -- queries -----------------------------------------------------------

    def load(self) -> None:
        """Load (or catch up with) the file now rather than on the first query."""
        with self._mutex:
            self._refresh()

    def page(self, status: str | None, limit: int, offset: int) -> tuple[list[tuple[str, str]], int]:
        with self._mutex:
            return self._refresh().page(status, limit, offset)

    def ids_with(self, statuses: Iterable[str]) -> list[tuple[str, str]]:
        with self._mutex:
            return self._refresh().ids_with(statuses)

    def finished_before(self, cutoff: int, finished: Iterable[str]) -> list[str]:
        with self._mutex:
            return self._refresh().finished_before(cutoff, finished)

    def maybe_compact(self) -> None:
        with self._mutex:
            self._refresh()
            self._compact_if_worth_it()

    def close(self) -> None:
        self._lock.close()
        with self._mutex:
            if self._snap is not None:
                self._snap.handle.close()
                self._snap = None

    # -- loading -------------------------------------------------------------

    def _refresh(self) -> IndexTable:
        snap = self._snap
        if snap is not None:
            try:
                stat = os.stat(self.path)
            except FileNotFoundError:
                stat = None
            if stat is not None and stat.st_ino == snap.ino and stat.st_size >= snap.offset:
                if stat.st_size == snap.offset or snap.tail(stat.st_size):
                    return snap.table
            snap.handle.close()  # rewritten, deleted or corrupt: load it again
            self._snap = None
        self._snap = self._load()
        return self._snap.table

    def _read_file(self) -> Snapshot | None:
        """The index as on disk, or None if it is missing or has an invalid line."""
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return None
        try:
            table = IndexTable()
            consumed, lines = consume(handle.read, table)
            return Snapshot(table, handle, consumed, lines)
        except ValueError:
            handle.close()
            return None
        except BaseException:
            handle.close()
            raise

    def _load(self) -> Snapshot:
        snap = self._read_file() or self._rebuild()
        self._snap = snap
        if not self._reconciled:
            self._reconcile(snap)
            self._reconciled = True
        self._compact_if_worth_it()  # may swap in a new snapshot
        return self._snap

    def _rebuild(self) -> Snapshot:
        """Write the index anew from the task folders (file missing or corrupt)."""
        with self._file_lock():
            again = self._read_file()  # another process may have rebuilt it meanwhile
            if again is not None:
                return again
            log.warning("Rebuilding the task index %s from the task folders", self.path)
            table = IndexTable()
            table.defer_order()
            with os.scandir(self.dir) as entries:
                self._collect((entry.name for entry in entries if canonical_id(entry.name) == entry.name), table, keep=False)
            files.atomic_write(self.path, table.lines(), fsync=self._fsync)
            handle = open(self.path, "rb")  # nobody can append while we hold the lock
            return Snapshot(table, handle, os.fstat(handle.fileno()).st_size, len(table))

    def _collect(self, task_ids: Iterable[str], table: IndexTable, *, keep: bool) -> list[dict]:
        """Apply the records of these task folders to `table`, and return
        them if `keep` (repairs must be journaled too; a rebuild writes the
        whole table instead)."""
        collected = []
        for task_id in task_ids:
            state = self._read_state(task_id)
            if state is None:
                self._discard_orphan(task_id)
                continue
            try:
                record = record_of(state)
                table.apply(record)
            except (KeyError, TypeError, ValueError):
                log.warning("Task %s has an unreadable task.json; not listed", task_id)
                continue
            if keep:
                collected.append(record)
        return collected

    def _reconcile(self, snap: Snapshot) -> None:
        """Journal what a crash between a folder change and its record lost.
        One pass over the folder names, holding no list of them: the usual
        answer is "nothing", found when every indexed id was seen."""
        known = snap.table.records
        seen, unknown = 0, []
        with os.scandir(self.dir) as entries:
            for entry in entries:
                if entry.name in known:
                    seen += 1
                elif canonical_id(entry.name) == entry.name:
                    unknown.append(entry.name)
        repairs = self._collect(unknown, snap.table, keep=True)
        if seen < len(known):
            present = {name for name in os.listdir(self.dir) if name in known}
            gone = [{"id": task_id, "status": "deleted"} for task_id in known.keys() - present]
            snap.table.apply_many(gone)
            repairs.extend(gone)
            for record in gone:
                self._discard_orphan(record["id"])
        if repairs:
            log.info("Task index: %d record(s) repaired from the task folders", len(repairs))
            try:
                self.append(repairs)
            except OSError as exc:  # this process has them; the next load retries
                log.warning("Task index repairs not saved: %s", exc)

    def _compact_if_worth_it(self) -> None:
        snap = self._snap
        if snap is None or snap.lines <= 2 * len(snap.table) + self.COMPACT_SLACK:
            return
        with self._file_lock():
            try:
                stat = os.stat(self.path)
            except FileNotFoundError:
                return
            if stat.st_ino != snap.ino or not snap.tail(stat.st_size):
                return  # rewritten or corrupt meanwhile: the next refresh reloads
            try:
                files.atomic_write(self.path, snap.table.lines(), fsync=self._fsync)
            except OSError as exc:  # e.g. disk full: the journal still serves, just longer
                log.warning("Task index not compacted: %s", exc)
                return
            handle = open(self.path, "rb")  # nobody can append while we hold the lock
            size = os.fstat(handle.fileno()).st_size
        snap.handle.close()
        self._snap = Snapshot(snap.table, handle, size, len(snap.table))
