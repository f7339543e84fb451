"""What `/health` reports: is the broker answering, can the data folder be
written, which sandbox tier runs code here."""

from __future__ import annotations

import dramatiq
import redis

from agent import SandboxUnavailable
from storage import StorageError, TaskStore

from .broker import is_embedded, ping
from .engines import EngineFactory


class SystemHealth:
    def __init__(self, store: TaskStore, broker: dramatiq.Broker, engines: EngineFactory):
        self.store = store
        self.broker = broker
        self.engines = engines

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
        }

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
