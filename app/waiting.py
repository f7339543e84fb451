"""Requests that wait: live event streams and `?wait=` on a task.

Under waitress each such request holds a server thread for as long as it
waits. They share a budget of `max_streams` threads of their own (the server
runs `http_threads + max_streams` threads), so however many callers wait, the
API's other requests still find a free thread.
"""

from __future__ import annotations

import threading
import time

from storage import FINISHED, TaskStore

#: How often a waiting request looks at the task again.
POLL_S = 0.05


def server_threads(settings) -> int:
    """Threads the HTTP server needs: the API's own plus the waiting budget."""
    return settings.http_threads + settings.max_streams


class TooBusy(Exception):
    """Every slot of the waiting budget is taken (a 503: ask again later)."""


class WaitBudget:
    """At most `limit` waiting requests at once; the rest are told at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def try_take(self) -> bool:
        return self._slots.acquire(blocking=False)

    def give_back(self) -> None:
        self._slots.release()


def wait_until_finished(store: TaskStore, task_id: str, seconds: float, budget: WaitBudget) -> dict:
    """The task's state once it is finished or `seconds` have passed. With no
    slot free in the budget, the state as it is now: the caller asks again."""
    state = store.get(task_id)
    if seconds <= 0 or state["status"] in FINISHED or not budget.try_take():
        return state
    try:
        deadline = time.monotonic() + seconds
        while state["status"] not in FINISHED and time.monotonic() < deadline:
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
            state = store.get(task_id)
        return state
    finally:
        budget.give_back()
