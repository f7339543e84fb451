"""The store's questions about many tasks — listing, restart recovery,
cleanup, the metrics' task gauges — answered through the listing index, never
by scanning folders.

A mixin of `TaskStore`, kept apart because it is the part that must stay
fast at 100,000 tasks: each call costs the index lookup plus the task.json
files of its answer (a page, the pending/running tasks), whatever the total.
The index may lag the folders after a crash, never lead them, so what it
returns is checked against task.json and any lag is journaled as a repair.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from .index import TaskIndex
from .journal import record_of
from .states import FINISHED, STATUSES, summary
from .table import RANK
from .times import format_ts, ts_key
from .trash import Trash

#: Threads that remove folders during a large cleanup.
CLEANUP_THREADS = 8


class IndexedQueries:
    """Listing, recovery and cleanup for a `TaskStore`."""

    index: TaskIndex
    tasks_dir: Path
    _trash: Trash
    _clock: Callable[[], datetime]
    _guard: Callable[[str, str], AbstractContextManager]
    _read_or_none: Callable[[str], dict | None]
    _journal: Callable[[list[dict]], None]

    def load_index(self) -> None:
        """Load the listing index now (e.g. at process start) rather than on
        the first listing."""
        with self._guard("load the task index", "*"):
            self.index.load()

    def list(self, *, status: str | None = None, limit: int = 100, offset: int = 0) -> tuple[list[dict], int]:
        """One page of task summaries, newest first, and the number of tasks
        matching `status`. Reads the index and the page's task.json files only."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        for _ in range(3):
            with self._guard("list tasks", "*"):
                ids, total = self.index.page(status, limit, offset)
            states, repairs = self._states_checked(ids)
            page = [summary(state) for state in states if status is None or state.get("status") == status]
            if not repairs:
                return page, total
            self.index.repair(repairs)  # the index lagged: fix it and pick the page again
        return page, total

    def _states_checked(self, indexed: list[tuple[str, str]]) -> tuple[list[dict], list[dict]]:
        """The states of indexed tasks, and index records for those whose
        index entry lags what their folder says."""
        states, repairs = [], []
        for task_id, status in indexed:
            state = self._read_or_none(task_id)
            if state is None:
                if not (self.tasks_dir / task_id).exists():
                    repairs.append({"id": task_id, "status": "deleted"})
                continue
            if state.get("status") != status and state.get("status") in STATUSES:
                repairs.append(record_of(state))
            states.append(state)
        return states, repairs

    def ids_with_status(self, *statuses: str) -> list[str]:
        """Ids of tasks in any of `statuses`, oldest first, checked against
        their task.json (the index may lag a crash, never lead it)."""
        return [state["task_id"] for state in self._states_with_status(statuses)]

    def status_counts(self, *statuses: str) -> dict[str, int]:
        """How many tasks are in each of `statuses` now, checked against
        their task.json like `ids_with_status` (one stat per unchanged task,
        see statecache.py): meant for the few unfinished statuses."""
        counts = Counter(state["status"] for state in self._states_with_status(statuses))
        return {status: counts[status] for status in statuses}

    def _states_with_status(self, statuses: tuple[str, ...]) -> list[dict]:
        unknown = set(statuses) - set(STATUSES)
        if unknown:
            raise ValueError(f"unknown status(es) {sorted(unknown)}; use {', '.join(STATUSES)}")
        reach = max((RANK[status] for status in statuses), default=-1)
        with self._guard("list tasks", "*"):
            candidates = self.index.ids_with(status for status, rank in RANK.items() if rank <= reach)
        states, repairs = self._states_checked(candidates)
        self.index.repair(repairs)
        return [state for state in states if state.get("status") in statuses]

    def delete_finished_older_than(self, max_age_hours: float) -> int:
        """Delete finished tasks completed more than `max_age_hours` ago,
        their state and their workspace; pending and running tasks are never
        touched. Then finish what interrupted deletions left in the trash.
        Returns how many tasks were deleted."""
        try:
            cutoff = ts_key(format_ts(self._clock() - timedelta(hours=max_age_hours)))
        except OverflowError:  # older than the calendar: nothing is that old
            return 0
        with self._guard("clean up", "*"):
            old = self.index.finished_before(cutoff, FINISHED)
            removed = 0
            # Removing files is system calls: threads overlap them (~2x faster).
            with ThreadPoolExecutor(CLEANUP_THREADS, thread_name_prefix="cleanup") as pool:
                for start in range(0, len(old), 1000):
                    batch = old[start:start + 1000]
                    removed += sum(pool.map(self._trash.delete, batch))
                    self._journal([{"id": task_id, "status": "deleted"} for task_id in batch])
            self._trash.empty()
            self.index.maybe_compact()
        return removed
