"""Entry point of the `clock` process: `python -m actors.clock`.

Sends the cleanup actor a message on the configured schedule and sends
again the pending tasks whose message was lost (see schedule.py); exits
cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import logging
import signal
import sys

from config import ConfigError, load_config

from .logs import setup_logging
from .schedule import blocking_scheduler
from .system import TaskSystem

log = logging.getLogger("aipy.clock")


def main() -> int:
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.settings.debug)
    system = TaskSystem(config)
    scheduler = blocking_scheduler(system)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    log.info("Clock started: cleanup every %g minute(s), reconcile every %g s",
             config.settings.cleanup_interval_minutes, config.settings.reconcile_interval_s)
    try:
        scheduler.start()
    except KeyboardInterrupt:
        pass
    log.info("Clock stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
