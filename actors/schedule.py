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

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from .reconciler import Reconciler

log = logging.getLogger("aipy.schedule")


def _send_cleanup(system) -> None:
    try:
        system.request_cleanup()
    except Exception as exc:  # a missed run is retried at the next interval
        log.warning("Could not send the scheduled cleanup: %s", exc)


def add_cleanup_job(scheduler: BaseScheduler, system) -> BaseScheduler:
    scheduler.add_job(
        _send_cleanup, "interval", args=[system], id="cleanup",
        minutes=system.settings.cleanup_interval_minutes,
        next_run_time=datetime.now(timezone.utc), coalesce=True, max_instances=1,
    )
    return scheduler


def _reconcile(reconciler: Reconciler) -> None:
    try:
        reconciler.run_once()
    except Exception:  # a bug must not stop the schedule: the next pass tries again
        log.exception("Reconcile failed")


def add_reconcile_job(scheduler: BaseScheduler, system) -> BaseScheduler:
    reconciler = Reconciler.from_settings(system.store, system.run_task, system.settings)
    scheduler.add_job(
        _reconcile, "interval", args=[reconciler], id="reconcile",
        seconds=system.settings.reconcile_interval_s,
        next_run_time=datetime.now(timezone.utc), coalesce=True, max_instances=1,
    )
    return scheduler


def background_scheduler(system) -> BackgroundScheduler:
    scheduler = add_cleanup_job(BackgroundScheduler(timezone=timezone.utc, daemon=True), system)
    return add_reconcile_job(scheduler, system)


def blocking_scheduler(system) -> BlockingScheduler:
    return add_reconcile_job(add_cleanup_job(BlockingScheduler(timezone=timezone.utc), system), system)
