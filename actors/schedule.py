"""The cleanup schedule: APScheduler sends the `cleanup` actor a message
every `cleanup_interval_minutes` (default 60) and once at start.

It only sends: the cleanup itself runs on a worker. A blocking scheduler runs
in the `clock` process; in embedded mode a background one runs in the server.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

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


def background_scheduler(system) -> BackgroundScheduler:
    return add_cleanup_job(BackgroundScheduler(timezone=timezone.utc, daemon=True), system)


def blocking_scheduler(system) -> BlockingScheduler:
    return add_cleanup_job(BlockingScheduler(timezone=timezone.utc), system)
