"""A warning for tasks that nothing will run.

A process that runs no tasks itself (the web process over Redis, or
`--no-worker`) stores each task and sends it to the Redis queue; if no
worker process takes from that queue, the task stays `pending` and nobody
says why. Here a task pending longer than `warn_after_s` (the setting
no_worker_warn_s, default 60) while no worker is seen gets one WARNING line
naming it, the queue and what to start.

"No worker seen" is read from Redis itself: each process that consumes the
queue keeps one subscription to its wake-up channel while it is connected
(wakeups.py), so the channel's subscriber count is the number of worker
processes alive now, and drops as soon as one exits or loses Redis.
Dramatiq's heartbeats cannot tell: every broker command records one for its
sender, a web process's send included.

A pass reads the index's pending tasks and asks Redis only when one of them
is overdue and not warned of yet. Each task is warned of once; while workers
are seen nothing is logged (they are busy, not missing), and a task still
pending is looked at again by later passes, in case they go.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Callable

from storage import StorageError, TaskStore, system_clock

from .reconciler import pending_s

log = logging.getLogger("aipy.queue")

#: At most this many task ids are named in one warning line.
SHOWN_IDS = 5


class NoWorkerWatch:
    """Warns of tasks pending past `warn_after_s` (default 60) while
    `workers_seen()` is 0 (None: unknown, Redis cannot be asked, and the
    link logs that). `queue` is the queue's URL as the log may show it;
    `clock` (default: UTC now) is there for tests."""

    def __init__(self, store: TaskStore, workers_seen: Callable[[], int | None], queue: str, *,
                 warn_after_s: float = 60.0, clock: Callable[[], datetime] = system_clock):
        self.store = store
        self.workers_seen = workers_seen
        self.queue = queue
        self.warn_after_s = warn_after_s
        self.clock = clock
        self._warned: set[str] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[str]:
        """One pass; the ids of the tasks warned of in it."""
        now = self.clock()
        pending = set(self.store.ids_with_status("pending"))
        self._warned &= pending  # forget the tasks that have left `pending`
        overdue = sorted(task_id for task_id in pending - self._warned
                         if pending_s(self.store, task_id, now) >= self.warn_after_s)
        if not overdue or self.workers_seen() != 0:
            return []
        self._warned.update(overdue)
        more = len(overdue) - SHOWN_IDS
        named = ", ".join(overdue[:SHOWN_IDS]) + (f" and {more} more" if more > 0 else "")
        log.warning("No worker takes tasks from the Redis queue %s: %d task(s) pending for over %g s (%s); "
                    "start a worker process (python -m actors.worker) with the same REDIS_URL",
                    self.queue, len(overdue), self.warn_after_s, named)
        return overdue

    def start(self) -> None:
        """Run a pass every half `warn_after_s` (0.1 s to 15 s) in a thread of its own."""
        every_s = min(max(self.warn_after_s / 2, 0.1), 15.0)
        self._thread = threading.Thread(target=self._watch, args=(every_s,), name="no-worker-watch", daemon=True)
        self._thread.start()

    def _watch(self, every_s: float) -> None:
        while not self._stopping.wait(every_s):
            try:
                self.run_once()
            except StorageError as exc:  # the next pass tries again; /health shows the storage
                log.debug("No-worker watch skipped a pass: %s", exc)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
