"""The schedule: APScheduler sends the `cleanup` actor a message every
`cleanup_interval_minutes` (default 60), and runs the reconciler (pending
tasks whose message was lost are sent again) every `reconcile_interval_s`
(default 15), each once at start too.

The cleanup only gets a message: deleting thousands of tasks is work for a
worker. The reconciler runs here, in the scheduler's own thread, because it
checks the queue itself: sent as a message, its pass would be lost with the
very messages it is there to find, and would wait behind long tasks while
every worker thread is busy. A pass is cheap (the index's pending tasks; the
queue is read only when one of them is old enough) and only sends.

A blocking scheduler runs in the `clock` process; in embedded mode a
background one runs in the server.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TypeVar

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from storage import TaskStore

from .pipeline import Pipeline
from .reconciler import Reconciler

log = logging.getLogger("aipy.schedule")

S = TypeVar("S", bound=BaseScheduler)


def _send_cleanup(pipeline: Pipeline) -> None:
    try:
        pipeline.request_cleanup()
    except Exception as exc:  # a missed run is retried at the next interval
        log.warning("Could not send the scheduled cleanup: %s", exc)


def _reconcile(reconciler: Reconciler) -> None:
    try:
        reconciler.run_once()
    except Exception:  # a bug must not stop the schedule: the next pass tries again
        log.exception("Reconcile failed")


def add_jobs(scheduler: S, pipeline: Pipeline, store: TaskStore, settings) -> S:
    """The cleanup and the reconcile job on `scheduler`, each run once at start."""
    now = datetime.now(timezone.utc)
    scheduler.add_job(_send_cleanup, "interval", args=[pipeline], id="cleanup",
                      minutes=settings.cleanup_interval_minutes, next_run_time=now, coalesce=True, max_instances=1)
    reconciler = Reconciler.from_settings(store, pipeline.run_task, settings)
    scheduler.add_job(_reconcile, "interval", args=[reconciler], id="reconcile",
                      seconds=settings.reconcile_interval_s, next_run_time=now, coalesce=True, max_instances=1)
    return scheduler


def background_scheduler(pipeline: Pipeline, store: TaskStore, settings) -> BackgroundScheduler:
    return add_jobs(BackgroundScheduler(timezone=timezone.utc, daemon=True), pipeline, store, settings)


def blocking_scheduler(pipeline: Pipeline, store: TaskStore, settings) -> BlockingScheduler:
    return add_jobs(BlockingScheduler(timezone=timezone.utc), pipeline, store, settings)
