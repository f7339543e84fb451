"""Entry point of the `worker` process: `python -m actors.worker`.

One process that consumes the task queues with `workers` Dramatiq worker
threads, until SIGTERM or SIGINT. Why not Dramatiq's own command line: it
forks worker processes and forwards its signals to them, so under a
supervisor that signals the whole process group (honcho, foreman, Heroku,
systemd's default) each child gets SIGTERM twice, takes the second as "kill
now" and dies with its tasks still `running` and their code still alive.
Here any number of signals mean one thing: stop taking tasks, tell the
running ones to stop (they end as `error` "interrupted: the server stopped
while this task ran", and every process their code started is killed), and
exit 0 well within the 10 s a supervisor waits before SIGKILL. Scale out by
running more worker processes.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from agent import SandboxUnavailable

from .entry import system_from_config

log = logging.getLogger("aipy.worker")

#: How long the running tasks get to end after a stop signal; with the
#: engine's 0.1 s cancel probe they take well under a second.
STOP_TIMEOUT_S = 8.0


def main() -> int:
    system = system_from_config()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        # Chooses the sandbox first: a tier that cannot run code fails the
        # start, and what a killed worker's tasks left running is killed.
        system.start_workers()
    except SandboxUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop.wait()
    log.info("Stopping: running tasks end as interrupted")
    system.stop(timeout_s=STOP_TIMEOUT_S)
    log.info("Worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
