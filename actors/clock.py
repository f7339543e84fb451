"""Entry point of the `clock` process: `python -m actors.clock`.

Sends the cleanup actor a message on the configured schedule and sends
again the pending tasks whose message was lost (see schedule.py); exits
cleanly on SIGTERM or Ctrl-C. Like the worker it starts honestly
(entry.py), and waits for an unreachable Redis, in one log line and retries
with backoff, before its first cleanup and reconcile pass.
With no REDIS_URL the web process runs the cleanup itself: the clock says so
in one line and idles until stopped.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from .entry import idle_without_redis, system_from_config
from .schedule import blocking_scheduler

log = logging.getLogger("aipy.clock")


def main() -> int:
    system = system_from_config()
    settings = system.settings
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if idle_without_redis(system, "clock", stop):
        return 0
    if not system.wait_for_broker(stop, "cleanups and re-sends start once it answers"):
        system.stop()
        log.info("Clock stopped before Redis answered")
        return 0
    scheduler = blocking_scheduler(system.pipeline, system.store, settings)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if stop.is_set():  # a stop that came as Redis answered
        return 0
    log.info("Clock started: cleanup every %g minute(s), reconcile every %g s",
             settings.cleanup_interval_minutes, settings.reconcile_interval_s)
    try:
        scheduler.start()
    except KeyboardInterrupt:
        pass
    log.info("Clock stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
