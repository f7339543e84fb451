"""The job pipeline: the three Dramatiq actors on one broker, and the one
way to send each of them.

- `run_task` (queue `tasks`, priority 0): run a stored task.
- `deliver_callback` (queue `callbacks`, priority 5): one attempt to POST a
  finished task's result to its `callback_url`; Dramatiq's `Retries` middleware
  makes the later attempts (see actors/callbacks.py).
- `cleanup` (queue `maintenance`, priority 10): remove old finished tasks.

A lower priority number is taken first when a worker has messages of
several queues prefetched. Sending raises `BrokerUnavailable` when Redis
cannot take the message, so the caller can undo what it stored.
"""

from __future__ import annotations

import logging
from typing import Callable

import dramatiq
import redis

from storage import TaskStore

log = logging.getLogger("aipy.pipeline")

TASK_QUEUE = "tasks"
MAINTENANCE_QUEUE = "maintenance"
CALLBACK_QUEUE = "callbacks"


class BrokerUnavailable(Exception):
    """The broker cannot take messages now (Redis is down or unreachable)."""


class Pipeline:
    """Declares the actors on `broker` around the functions that do the work:
    `run_task(task_id)`, `cleanup(max_age_hours | None)` and
    `deliver_callback(task_id)` with its actor `callback_options` (retries).
    `on_task_ended(state)` is told of every task that ended (the metrics):
    every end, wherever it happens, comes through `task_finished`."""

    def __init__(self, broker: dramatiq.Broker, store: TaskStore, *, run_task: Callable[[str], object],
                 cleanup: Callable[[float | None], object], deliver_callback: Callable[[str], object],
                 callback_options: dict, on_task_ended: Callable[[dict], None] = lambda state: None):
        self.broker = broker
        self.store = store
        self.on_task_ended = on_task_ended
        self._cleanup = cleanup
        self.run_task = dramatiq.Actor(
            run_task, broker=broker, actor_name="run_task", queue_name=TASK_QUEUE,
            priority=0, options={"max_retries": 0},
        )
        self.cleanup = dramatiq.Actor(
            self._run_cleanup, broker=broker, actor_name="cleanup", queue_name=MAINTENANCE_QUEUE,
            priority=10, options={"max_retries": 0},
        )
        self.deliver_callback = dramatiq.Actor(
            deliver_callback, broker=broker, actor_name="deliver_callback", queue_name=CALLBACK_QUEUE,
            priority=5, options=callback_options,
        )

    def _run_cleanup(self, max_age_hours: float | None = None) -> None:
        # An actor returns nothing (Dramatiq warns of a discarded result);
        # how many tasks went is in the cleanup's own log line.
        self._cleanup(max_age_hours)

    def submit(self, task_id: str) -> None:
        """Queue a stored task to run. Raises BrokerUnavailable."""
        _send(self.run_task, task_id)

    def request_cleanup(self, max_age_hours: float | None = None) -> None:
        """Queue a cleanup (the scheduled path). Raises BrokerUnavailable."""
        _send(self.cleanup, max_age_hours)

    def task_finished(self, task_id: str) -> None:
        """Note the task's end, and queue the first delivery of its callback,
        if it has one."""
        try:
            state = self.store.get(task_id)
            self.on_task_ended(state)
            if not state.get("callback_url"):
                return
            _send(self.deliver_callback, task_id)
        except Exception as exc:  # a lost callback must not fail the task's end
            log.error("Task %s: callback not queued: %s", task_id, exc)


def _send(actor: dramatiq.Actor, *args) -> None:
    try:
        actor.send(*args)
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnavailable(f"the task queue (Redis) is unreachable: {exc}") from exc
