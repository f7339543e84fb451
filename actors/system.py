"""The task system: store, broker, actors, and optionally in-process workers
and the cleanup schedule, wired from one configuration.

Every process builds one: the web process to send messages, the `worker`
process to consume them, the `clock` process to send cleanups on a schedule,
and in embedded mode the single server process does all three.
"""

from __future__ import annotations

import logging

import dramatiq
import redis
from dramatiq.middleware import Middleware

from agent.executor import protect_from_children
from agent.sandbox import SandboxUnavailable
from config import AppConfig
from storage import InvalidTransition, StorageError, TaskStore
from storage.idempotency import IdempotencyKeys

from .broker import is_embedded, make_broker, ping
from .callbacks import CallbackPolicy, CallbackSender, check_callback_url
from .engines import EngineFactory
from .reconciler import Reconciler
from .runner import INTERRUPTED_BY_SHUTDOWN, TaskRunner

log = logging.getLogger("aipy.system")

TASK_QUEUE = "tasks"
MAINTENANCE_QUEUE = "maintenance"
CALLBACK_QUEUE = "callbacks"


class BrokerUnavailable(Exception):
    """The broker cannot take messages now (Redis is down or unreachable)."""


class _StopTasksOnShutdown(Middleware):
    """Tell running tasks to stop when a Dramatiq worker shuts down, so a
    SIGTERM ends them promptly instead of waiting for them to finish."""

    def __init__(self, runner: TaskRunner):
        self.runner = runner

    def before_worker_shutdown(self, broker, worker):
        self.runner.stopping.set()


class TaskSystem:
    def __init__(self, config: AppConfig, *, store: TaskStore | None = None, broker: dramatiq.Broker | None = None):
        self.config = config
        self.settings = config.settings
        self.store = store or TaskStore(self.settings.data_dir)
        self.broker = broker or make_broker(self.settings.redis_url)
        self.keys = IdempotencyKeys(self.store.root)
        self.engines = EngineFactory(config, self.store.workspaces_dir)
        self.runner = TaskRunner(self.store, self.engines, on_finished=self.task_finished)
        self.callback_policy = CallbackPolicy(
            secret=self.settings.callback_secret.get_secret_value() if self.settings.callback_secret else None,
            allowed_hosts=tuple(self.settings.callback_allowed_hosts),
            retries=self.settings.callback_retries,
            backoff_s=self.settings.callback_backoff_s,
            timeout_s=self.settings.callback_timeout_s,
        )
        self.callbacks = CallbackSender(self.store, self.callback_policy)
        self.broker.add_middleware(_StopTasksOnShutdown(self.runner))
        self.run_task = dramatiq.Actor(
            self.runner.run, broker=self.broker, actor_name="run_task", queue_name=TASK_QUEUE,
            priority=0, options={"max_retries": 0},
        )
        self.cleanup = dramatiq.Actor(
            self._cleanup, broker=self.broker, actor_name="cleanup", queue_name=MAINTENANCE_QUEUE,
            priority=10, options={"max_retries": 0},
        )
        self.deliver_callback = dramatiq.Actor(
            self._deliver_callback, broker=self.broker, actor_name="deliver_callback", queue_name=CALLBACK_QUEUE,
            priority=5, options={"max_retries": 0},
        )
        self.worker: dramatiq.Worker | None = None
        self.scheduler = None

    @property
    def embedded(self) -> bool:
        return is_embedded(self.broker)

    @property
    def mode(self) -> str:
        return "embedded" if self.embedded else "redis"

    def submit(self, task_id: str) -> None:
        """Queue a stored task to run. Raises BrokerUnavailable."""
        self._send(self.run_task, task_id)

    def request_cleanup(self, max_age_hours: float | None = None) -> None:
        """Queue a cleanup (the scheduled path). Raises BrokerUnavailable."""
        self._send(self.cleanup, max_age_hours)

    def _send(self, actor: dramatiq.Actor, *args) -> None:
        try:
            actor.send(*args)
        except (redis.RedisError, OSError) as exc:
            raise BrokerUnavailable(f"the task queue (Redis) is unreachable: {exc}") from exc

    def _cleanup(self, max_age_hours: float | None = None) -> None:
        self.cleanup_now(self.settings.max_age_hours if max_age_hours is None else max_age_hours)

    def cleanup_now(self, max_age_hours: float) -> int:
        """Remove finished tasks older than `max_age_hours`, and the
        idempotency keys as old; returns how many tasks went."""
        removed = self.store.delete_finished_older_than(max_age_hours)
        # Keys live as long as tasks are kept by the settings, whatever age
        # this one cleanup was asked for, so a retry cannot start a twin.
        self.keys.prune(self.settings.max_age_hours)
        log.info("Cleanup removed %d finished task(s) older than %g h", removed, max_age_hours)
        return removed

    # -- callbacks --------------------------------------------------------

    def check_callback_url(self, url: str) -> str | None:
        """Why `url` cannot be a callback target, or None when it can."""
        return check_callback_url(url, self.callback_policy)

    def task_finished(self, task_id: str) -> None:
        """Queue the first delivery of the task's callback, if it has one."""
        try:
            if not self.store.get(task_id).get("callback_url"):
                return
            self._send(self.deliver_callback, task_id, 1)
        except Exception as exc:  # a lost callback must not fail the task's end
            log.error("Task %s: callback not queued: %s", task_id, exc)

    def _deliver_callback(self, task_id: str, attempt: int = 1) -> None:
        delay = self.callbacks.deliver(task_id, attempt)
        if delay is not None:
            self.deliver_callback.send_with_options(args=(task_id, attempt + 1), delay=int(delay * 1000))

    def sandbox_status(self) -> dict:
        """The sandbox tier in force, for /health (chosen on first use)."""
        try:
            return self.engines.sandbox().describe()
        except SandboxUnavailable as exc:
            return {"tier": "unavailable", "error": str(exc)}

    def broker_error(self) -> str | None:
        """Why the broker is unusable, or None when it answers."""
        try:
            ping(self.broker)
        except (redis.RedisError, OSError) as exc:
            return f"redis unreachable: {exc}"
        return None

    # -- in-process roles -------------------------------------------------

    def start_in_process(self, *, run_tasks: bool) -> None:
        """Start what this process must do itself. Embedded mode is the
        whole system: recover, work and schedule here. Over Redis, work
        here only when `run_tasks`; the clock process owns the schedule
        and the broker keeps pending tasks across restarts."""
        if self.embedded or run_tasks:
            # First: choosing the sandbox kills what a dead worker's tasks
            # left running, and fails the start if no tier can run code.
            self.engines.sandbox()
        if self.embedded:
            self.recover()
        if self.embedded or run_tasks:
            self.start_workers()
        if self.embedded:
            self.start_schedule()

    def start_workers(self, threads: int | None = None) -> None:
        """Consume tasks in this process with `threads` worker threads.
        Raises SandboxUnavailable when no sandbox tier can run code here."""
        self.engines.sandbox()
        # Before consuming: send again what a Redis that came back empty lost
        # (embedded: recover() has just queued every pending task, so this finds none).
        Reconciler.from_settings(self.store, self.run_task, self.settings).run_once()
        protect_from_children()
        self.broker.emit_after("process_boot")
        # worker_timeout caps how long an idle Redis consumer sleeps between
        # polls, and so how long a new task can wait before it starts.
        self.worker = dramatiq.Worker(
            self.broker, worker_threads=threads or self.settings.workers, worker_timeout=self.settings.queue_poll_ms
        )
        self.worker.start()
        log.info("Agent manager initialized: %d worker thread(s), %s broker", self.worker.worker_threads, self.mode)

    def start_schedule(self) -> None:
        """Send a cleanup now and then every `cleanup_interval_minutes`."""
        from .schedule import background_scheduler

        self.scheduler = background_scheduler(self)
        self.scheduler.start()

    def recover(self) -> tuple[int, int]:
        """After a restart in embedded mode: queue the pending tasks again and
        end the ones a dead process left running. Returns both counts."""
        failed = requeued = 0
        for task_id in self.store.ids_with_status("running"):
            try:  # one damaged task must not keep the others, or the server, down
                self.store.end_task(task_id, "error", error=INTERRUPTED_BY_SHUTDOWN)
            except (StorageError, InvalidTransition) as exc:
                log.error("Task %s could not be recovered: %s", task_id, exc)
                continue
            self.task_finished(task_id)
            failed += 1
        for task_id in self.store.ids_with_status("pending"):
            self.submit(task_id)
            requeued += 1
        if failed or requeued:
            log.info("Recovered after restart: %d pending task(s) queued again, %d interrupted", requeued, failed)
        return requeued, failed

    def stop(self, timeout_s: float = 8.0) -> None:
        """Stop the schedule and the workers; running tasks end as errors."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        self.runner.stopping.set()
        if self.worker is not None:
            self.worker.stop(timeout=int(timeout_s * 1000))
            self.worker = None
        self.broker.close()
