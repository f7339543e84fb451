"""The task system of one process: its parts built from one configuration,
and started or stopped here.

Every process builds one: the web process to send messages, the `worker`
process to consume them, the `clock` process to send cleanups on a schedule,
and in embedded mode the single server process does all three. This module
only wires; the use cases live in the parts it builds: `Pipeline` (sending
tasks, cleanups and callbacks), `TaskRunner` (running a task), `Cleanup`,
`SystemHealth`, `recover` and the schedule.
"""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq.middleware import Middleware

from agent import protect_from_children
from config import AppConfig
from storage import IdempotencyKeys, TaskStore

from .broker import is_embedded, make_broker
from .callbacks import CallbackPolicy, CallbackSender
from .engines import EngineFactory
from .health import SystemHealth
from .idle_workers import start_quietly
from .maintenance import Cleanup
from .metrics import TaskMetrics
from .metrics_export import MetricsExport
from .metrics_files import MetricsFolder, MetricsPublisher
from .no_worker_watch import NoWorkerWatch
from .pipeline import Pipeline
from .reconciler import Reconciler
from .recovery import recover
from .redis_link import RedisLink
from .runner import TaskRunner

log = logging.getLogger("aipy.system")


class _StopTasksOnShutdown(Middleware):
    """Tell running tasks to stop when a Dramatiq worker shuts down, so a
    SIGTERM ends them promptly instead of waiting for them to finish."""

    def __init__(self, runner: TaskRunner):
        self.runner = runner

    def before_worker_shutdown(self, broker, worker):
        self.runner.stopping.set()


class TaskSystem:
    """Builds store, broker, engines, runner, callbacks and the pipeline; a
    test passes its own `store` or `broker`."""

    def __init__(self, config: AppConfig, *, store: TaskStore | None = None, broker: dramatiq.Broker | None = None):
        self.config = config
        self.settings = settings = config.settings
        self.store = store or TaskStore(settings.data_dir)
        self.broker = broker or make_broker(settings.redis_url, delayed_poll_ms=settings.queue_poll_ms)
        self.keys = IdempotencyKeys(self.store.root)
        self.engines = EngineFactory(config, self.store.workspaces_dir)
        self.cleanup = Cleanup(self.store, self.keys, settings.max_age_hours)
        self.health = SystemHealth(self.store, self.broker, self.engines, runs_tasks=lambda: self.worker is not None)
        self.callback_policy = CallbackPolicy(
            secret=settings.callback_secret.get_secret_value() if settings.callback_secret else None,
            allowed_hosts=tuple(settings.callback_allowed_hosts),
            retries=settings.callback_retries,
            backoff_s=settings.callback_backoff_s,
            timeout_s=settings.callback_timeout_s,
        )
        # What this process counts; shared with the other processes through
        # the data folder, so any web process's /metrics shows them all.
        self.metrics = TaskMetrics()
        metrics_folder = MetricsFolder(self.store.root, retire_after_s=settings.metrics_retire_after_s)
        self.metrics_publisher = MetricsPublisher(self.metrics.tally, metrics_folder,
                                                  interval_s=settings.metrics_publish_interval_s,
                                                  heartbeat_s=settings.metrics_retire_after_s / 3)
        self.metrics_export = MetricsExport(self.metrics.tally, metrics_folder, self.store)
        self.callbacks = CallbackSender(self.store, self.callback_policy, on_attempt=self.metrics.callback_attempt)
        self.runner = TaskRunner(self.store, self.engines, on_finished=lambda task_id: self.pipeline.task_finished(task_id),
                                 metrics=self.metrics)
        self.pipeline = Pipeline(self.broker, self.store, run_task=self.runner.run, cleanup=self.cleanup,
                                 deliver_callback=self.callbacks.deliver_current,
                                 callback_options=self.callback_policy.actor_options(),
                                 on_task_ended=self.metrics.task_ended)
        self.broker.add_middleware(_StopTasksOnShutdown(self.runner))
        self.worker: dramatiq.Worker | None = None
        self.scheduler = None
        self.no_worker_watch: NoWorkerWatch | None = None

    @property
    def embedded(self) -> bool:
        return is_embedded(self.broker)

    @property
    def mode(self) -> str:
        return self.health.mode

    @property
    def redis_link(self) -> RedisLink | None:
        """Whether Redis answers (redis_link.py); None for the embedded broker."""
        return getattr(self.broker, "link", None)

    def start_in_process(self, *, run_tasks: bool) -> None:
        """Start what this process must do itself. Embedded mode is the
        whole system: recover, work and schedule here. Over Redis, work
        here only when `run_tasks`; the clock process owns the schedule
        and the broker keeps pending tasks across restarts."""
        self.metrics_publisher.start()
        link = self.redis_link
        if link is not None:  # Redis unreachable: one line now, retried in the background
            link.check("submits answer 503" + (" and this process runs no task" if run_tasks else "") + " until then")
        if self.embedded or run_tasks:
            # First: choosing the sandbox kills what a dead worker's tasks
            # left running, and fails the start if no tier can run code.
            self.engines.sandbox()
        if self.embedded:
            recover(self.store, self.pipeline)
        if self.embedded or run_tasks:
            self.start_workers()
        if self.embedded:
            self.start_schedule()
        elif not run_tasks and link is not None:
            self.no_worker_watch = NoWorkerWatch(self.store, self.health.workers_seen, link.where,
                                                 warn_after_s=self.settings.no_worker_warn_s)
            self.no_worker_watch.start()

    def check_sandbox(self) -> None:
        """Choose the sandbox now, as a start-up check: SandboxUnavailable
        when no tier can run code here. (Choosing it also kills what a dead
        worker's tasks left running.)"""
        self.engines.sandbox()

    def wait_for_broker(self, stop: threading.Event, waiting: str) -> bool:
        """Block until the broker answers (True) or `stop` is set (False).
        The embedded one always answers; an unreachable Redis is one log
        line naming it and `waiting` (what waits), then retries with
        backoff (redis_link.py)."""
        link = self.redis_link
        return link is None or link.connect(stop, waiting)

    def start_workers(self, threads: int | None = None) -> None:
        """Consume tasks in this process with `threads` worker threads.
        Raises SandboxUnavailable when no sandbox tier can run code here."""
        self.metrics_publisher.start()
        self.engines.sandbox()
        self.engines.prepare_default_provider()
        self.engines.start_warm_kernels()
        # Before consuming: send again what a Redis that came back empty lost
        # (embedded: recover() has just queued every pending task, so this finds none).
        # Skipped while Redis is unreachable (said once already): the clock's passes do it.
        if self.redis_link is None or self.redis_link.up.is_set():
            Reconciler.from_settings(self.store, self.pipeline.run_task, self.settings).run_once()
        protect_from_children()
        self.broker.emit_after("process_boot")
        # The broker wakes an idle consumer when a task is sent (wakeups.py);
        # worker_timeout is only how often idle consumers look on their own.
        # Idle worker threads wait for a message or a stop (idle_workers.py).
        self.worker = dramatiq.Worker(
            self.broker, worker_threads=threads or self.settings.workers,
            worker_timeout=self.settings.queue_idle_wake_ms,
        )
        start_quietly(self.worker)
        log.info("Agent manager initialized: %d worker thread(s), %s broker", self.worker.worker_threads, self.mode)

    def start_schedule(self) -> None:
        """Send a cleanup now and then every `cleanup_interval_minutes`."""
        from .schedule import background_scheduler

        self.scheduler = background_scheduler(self.pipeline, self.store, self.settings)
        self.scheduler.start()

    def stop(self, timeout_s: float = 8.0) -> None:
        """Stop the schedule and the workers; running tasks end as errors."""
        if self.no_worker_watch is not None:
            self.no_worker_watch.stop()
            self.no_worker_watch = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        self.runner.stopping.set()
        if self.worker is not None:
            self.worker.stop(timeout=int(timeout_s * 1000))
            self.worker = None
        self.metrics_publisher.stop()  # after the workers: their last counts go with it
        self.engines.close()
        self.broker.close()
