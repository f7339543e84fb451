"""What `/health` reports: is the broker answering, can the data folder be
written, which sandbox tier runs code here, and whether tasks run in this
process or, over Redis, in which queue's worker processes."""

from __future__ import annotations

from typing import Callable

import dramatiq
import redis

from agent import SandboxUnavailable
from storage import StorageError, TaskStore

from .broker import is_embedded, ping
from .engines import EngineFactory
from .redis_link import UNREACHABLE
from .wakeups import NotifyingRedisBroker


class SystemHealth:
    """`runs_tasks()` says whether this process has worker threads now."""

    def __init__(self, store: TaskStore, broker: dramatiq.Broker, engines: EngineFactory, *,
                 runs_tasks: Callable[[], bool]):
        self.store = store
        self.broker = broker
        self.engines = engines
        self.runs_tasks = runs_tasks

    @property
    def mode(self) -> str:
        return "embedded" if is_embedded(self.broker) else "redis"

    def report(self) -> tuple[bool, dict]:
        """(healthy, the report): healthy when the broker answers and the
        data folder can be written."""
        broker = self.broker_error()
        storage = self.storage_error()
        return broker is None and storage is None, {
            "mode": self.mode,
            "broker": broker or "ok",
            "storage": storage or "ok",
            "sandbox": self.sandbox_status(),
            **self.task_placement(),
        }

    def task_placement(self) -> dict:
        """`runs_tasks`: whether this process runs tasks; over Redis also
        `task_queue` (its URL, the password hidden) and `workers_seen` (see
        `workers_seen`)."""
        placement: dict = {"runs_tasks": self.runs_tasks()}
        if isinstance(self.broker, NotifyingRedisBroker):
            placement.update(task_queue=self.broker.link.where, workers_seen=self.workers_seen())
        return placement

    def workers_seen(self) -> int | None:
        """The processes taking tasks from the Redis queue now (this one
        included): those listening for its wake-up notices (wakeups.py).
        None in embedded mode, or when Redis cannot be asked."""
        if not isinstance(self.broker, NotifyingRedisBroker):
            return None
        try:
            return self.broker.waker.listeners()
        except UNREACHABLE:
            return None

    def broker_error(self) -> str | None:
        """Why the broker is unusable, or None when it answers."""
        try:
            ping(self.broker)
        except (redis.RedisError, OSError) as exc:
            return f"redis unreachable: {exc}"
        return None

    def storage_error(self) -> str | None:
        try:
            self.store.check()
        except StorageError as exc:
            return str(exc)
        return None

    def sandbox_status(self) -> dict:
        """The sandbox tier in force (chosen on first use)."""
        try:
            return self.engines.sandbox().describe()
        except SandboxUnavailable as exc:
            return {"tier": "unavailable", "error": str(exc)}
