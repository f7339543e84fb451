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

It starts honestly (entry.py): a bad configuration, an unusable data folder
or no sandbox tier is one `error:` line and a non-zero exit before anything
runs. An unreachable Redis is one line naming it, then the worker waits for
it, retrying with backoff (redis_link.py), and takes tasks once it answers.
With no REDIS_URL at all it has no queue shared with the web process (which
then runs every task itself): it says so in one line and idles until stopped.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from .entry import StartupFailure, check_sandbox, idle_without_redis, report, system_from_config

log = logging.getLogger("aipy.worker")

#: How long the running tasks get to end after a stop signal; with the
#: engine's 0.1 s cancel probe they take well under a second.
STOP_TIMEOUT_S = 8.0


def main() -> int:
    system = system_from_config()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if idle_without_redis(system, "worker", stop):
        return 0
    try:
        # Chooses the sandbox first: a tier that cannot run code fails the
        # start, and what a killed worker's tasks left running is killed.
        check_sandbox(system)
    except StartupFailure as failure:
        system.stop()
        return report(failure)
    if not system.wait_for_broker(stop, "this worker takes tasks once it answers"):
        system.stop(timeout_s=STOP_TIMEOUT_S)
        log.info("Worker stopped before Redis answered")
        return 0
    system.start_workers()
    stop.wait()
    log.info("Stopping: running tasks end as interrupted")
    system.stop(timeout_s=STOP_TIMEOUT_S)
    log.info("Worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
