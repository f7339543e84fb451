"""Entry point of the `clock` process: `python -m actors.clock`.

Sends the cleanup actor a message on the configured schedule and sends
again the pending tasks whose message was lost (see schedule.py); exits
cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import logging
import signal
import sys

from .entry import system_from_config
from .schedule import blocking_scheduler

log = logging.getLogger("aipy.clock")


def main() -> int:
    system = system_from_config()
    settings = system.settings
    scheduler = blocking_scheduler(system.pipeline, system.store, settings)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
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
