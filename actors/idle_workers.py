"""Idle worker threads that sleep until there is work or a stop.

Dramatiq's worker threads take messages from their process's in-memory
work queue with a timeout (`worker_timeout`, the setting
queue_idle_wake_ms), only so that a stop is noticed: every idle thread woke
once a second, and with the default eight threads that was most of what an
idle worker process cost. Here an idle thread waits up to IDLE_WAIT_S on a
queue that a stop wakes at once: a new message still wakes a thread the
moment it is put (Queue's own condition), and a stop is as quick as before.

The queue consumers keep their own look every queue_idle_wake_ms (see
wakeups.py): over Redis it also carries the heartbeat and finds a message
whose wake-up notice was lost.
"""

from __future__ import annotations

import time
from queue import Empty, PriorityQueue

import dramatiq

#: How long an idle worker thread waits for a message before it looks again
#: on its own: long, since both a message and a stop wake it.
IDLE_WAIT_S = 60.0


class WakeableWorkQueue(PriorityQueue):
    """A PriorityQueue whose waiting `get`s a `wake` ends at once (they
    raise Empty, as on a timeout), for as long as it is `stopping`."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False

    def get(self, block: bool = True, timeout: float | None = None):
        with self.not_empty:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._qsize():
                if self.stopping or not block:
                    raise Empty
                if deadline is None:
                    self.not_empty.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Empty
                self.not_empty.wait(left)
            item = self._get()
            self.not_full.notify()
            return item

    def wake(self) -> None:
        """End every wait, now and from now on."""
        with self.not_empty:
            self.stopping = True
            self.not_empty.notify_all()


def start_quietly(worker: dramatiq.Worker) -> None:
    """Start `worker` (not started yet) with worker threads that wait
    IDLE_WAIT_S for a message, and are woken when the worker stops."""
    queue = WakeableWorkQueue()
    worker.work_queue = queue  # the consumers, made by start(), put into it
    worker.start()
    for thread in worker.workers:
        thread.timeout = IDLE_WAIT_S
        thread.stop = _stop_and_wake(thread.stop, queue)


def _stop_and_wake(stop, queue: WakeableWorkQueue):
    def stop_and_wake() -> None:
        stop()  # running = False: the thread leaves its loop once its get() returns
        queue.wake()
    return stop_and_wake
