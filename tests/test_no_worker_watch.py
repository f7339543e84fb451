"""The warning for tasks that nothing will run (actors/no_worker_watch.py):
once per task pending past the setting while no worker is seen."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from actors.no_worker_watch import NoWorkerWatch
from storage import TaskStore

NOW = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)


def store_with(tmp_path, *ages_s: float) -> tuple[TaskStore, list[str]]:
    """A store holding one pending task submitted `age` seconds before NOW per age."""
    made = []
    for age in ages_s:
        store = TaskStore(tmp_path / "data", clock=lambda age=age: NOW - timedelta(seconds=age))
        made.append(store.create(f"submitted {age} s ago")["task_id"])
        store.close()
    return TaskStore(tmp_path / "data"), made


def watch(store: TaskStore, workers: list[int | None]) -> NoWorkerWatch:
    """A watch warning after 60 s, seeing `workers[0]` workers (change it to change that)."""
    return NoWorkerWatch(store, lambda: workers[0], "redis://127.0.0.1:6379/0", warn_after_s=60, clock=lambda: NOW)


def test_a_task_pending_past_the_setting_with_no_worker_is_warned_of_once(tmp_path, caplog):
    store, (old, young) = store_with(tmp_path, 90, 10)
    sees = watch(store, [0])
    with caplog.at_level(logging.WARNING, logger="aipy.queue"):
        assert sees.run_once() == [old]
        assert sees.run_once() == []
    [line] = [record.getMessage() for record in caplog.records]
    assert line.startswith("No worker takes tasks from the Redis queue redis://127.0.0.1:6379/0: 1 task(s) pending")
    assert old in line and young not in line and "python -m actors.worker" in line


def test_nothing_is_said_while_a_worker_is_seen_or_redis_cannot_be_asked(tmp_path):
    store, (old,) = store_with(tmp_path, 90)
    workers: list[int | None] = [1]
    sees = watch(store, workers)
    assert sees.run_once() == []
    workers[0] = None
    assert sees.run_once() == []
    workers[0] = 0  # the workers went: now it is said
    assert sees.run_once() == [old]


def test_a_task_that_left_pending_is_not_warned_of(tmp_path):
    store, (old,) = store_with(tmp_path, 90)
    store.transition(old, "cancelled")
    assert watch(store, [0]).run_once() == []
