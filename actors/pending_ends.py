"""Task ends that storage refused (a full disk, a read-only data folder),
recorded in the background as soon as storage takes them, so a worker is
free for other tasks and no task waits for a restart to end.

`TaskRunner` tries an end itself for a moment (`EndRetry.inline_s`), then
hands it here; `Handover` decides when. Retrying is safe because
`TaskStore.finish` is: the log's task_end is the commit point and is never
written twice (storage/changes.py).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

import tenacity

from storage import DamagedTask, InvalidTransition, StorageError, TaskNotFound, TaskStore

log = logging.getLogger("aipy.runner")


def try_end(store: TaskStore, task_id: str, end: dict, error: str | None,
            expect: str | None = None) -> bool | StorageError:
    """One try at `TaskStore.finish`: True when it ended the task, False
    when there is nothing left to do (ended by someone else, deleted,
    damaged, or no longer `expect`), or the StorageError that refused it
    when a later try may succeed (logged by whoever keeps trying, not at
    every try)."""
    try:
        return store.finish(task_id, end, error=error, expect=expect)[1]
    except TaskNotFound:
        log.warning("Task %s vanished before its end was recorded (deleted)", task_id)
        return False
    except InvalidTransition as exc:
        log.error("Task %s: its end (%s) cannot be recorded: %s", task_id, end.get("status"), exc)
        return False
    except DamagedTask as exc:
        log.error("Task %s: its end cannot be recorded: %s", task_id, exc)
        return False
    except StorageError as exc:
        return exc


@dataclass(frozen=True)
class EndRetry:
    """How an end that storage refused is tried again: by its worker for
    `inline_s` (default 2), then in the background, first after `backoff_s`
    (0.2), doubling up to `max_backoff_s` (5), for at most `max_tasks`
    (1,000) tasks at once. The defaults are the settings' (end_retry_*)."""

    inline_s: float = 2.0
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    max_tasks: int = 1000

    @classmethod
    def from_settings(cls, settings) -> "EndRetry":
        return cls(settings.end_retry_inline_s, settings.end_retry_backoff_s,
                   settings.end_retry_max_backoff_s, settings.end_retry_max_tasks)


class PendingEnds:
    """Task ends that storage refused, recorded by one background thread as
    soon as storage takes them.

    The thread starts with the first end handed over and stops when none is
    left, so a healthy worker pays nothing for it. Each round it tries every
    end it holds, then waits: `backoff_s` after a round that recorded one,
    twice the last wait after a round that recorded none, up to
    `max_backoff_s`, which is thus the most a task waits once space is back.
    Memory: one entry per task (its id and task_end content, a few KB), at
    most `max_tasks`; beyond that `add` refuses and the worker keeps trying
    itself (see `TaskRunner._record_end`). When the process stops, one last
    round is tried and what is left is logged: those tasks stay `running`
    until recovered, as if their process had died (an embedded server does
    that at its next start).
    """

    def __init__(self, store: TaskStore, policy: EndRetry, on_finished: Callable[[str], None],
                 stopping: threading.Event):
        self.store = store
        self.policy = policy
        self.on_finished = on_finished
        self.stopping = stopping
        self._ends: dict[str, tuple[dict, str | None, str | None]] = {}  # id -> end, error, expect
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, task_id: str, end: dict, error: str | None, expect: str | None = None,
            refusal: Exception | None = None) -> bool:
        """Record this end as soon as storage takes it, while the task is
        still `expect` (see `TaskStore.finish`; `refusal` says why it could
        not be yet, for the log). False when `max_tasks` ends wait already.
        A task handed over twice keeps its first end: that is how it really
        ended."""
        with self._lock:
            if task_id not in self._ends and len(self._ends) >= self.policy.max_tasks:
                return False
            self._ends.setdefault(task_id, (end, error, expect))
            log.warning("Task %s: storage refuses its end (%s); it is recorded as soon as storage takes it",
                        task_id, refusal or "storage failed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="pending-ends", daemon=True)
                self._thread.start()
        return True

    def waiting(self) -> list[str]:
        """The ids of the tasks whose end is not recorded yet."""
        with self._lock:
            return list(self._ends)

    def _work(self) -> None:
        # A round over every end held, not one call's retries: ends come and
        # go between rounds and a round that records one resets the pause,
        # which tenacity's per-call attempt count cannot express.
        pause = self.policy.backoff_s
        while True:
            stopping = self.stopping.wait(pause)
            with self._lock:
                batch = list(self._ends.items())
            recorded = False
            for task_id, (end, error, expect) in batch:
                ended = self._try(task_id, end, error, expect)
                if not isinstance(ended, bool):
                    continue
                recorded = True
                with self._lock:
                    del self._ends[task_id]
                if ended:
                    log.info("Task %s: its end (%s) is recorded now", task_id, end.get("status"))
                    self._notify(task_id)
            with self._lock:
                if not self._ends or stopping:
                    if self._ends:
                        log.error("Storage still refuses the end of %d task(s) as the process stops (%s); "
                                  "they stay running until recovered", len(self._ends), ", ".join(self._ends))
                    self._thread = None
                    return
            pause = self.policy.backoff_s if recorded else min(pause * 2, self.policy.max_backoff_s)

    def _try(self, task_id: str, end: dict, error: str | None, expect: str | None) -> bool | StorageError:
        try:
            return try_end(self.store, task_id, end, error, expect)
        except Exception:  # a bug must not kill the thread that ends every other task
            log.exception("Task %s: recording its end failed for good", task_id)
            return False

    def _notify(self, task_id: str) -> None:
        try:
            self.on_finished(task_id)
        except Exception:
            log.exception("Task %s: on_finished failed", task_id)


class Handover:
    """When the worker stops retrying an end itself (tenacity's stop, asked
    after each refused try, with the next pause known): once the next pause
    would end past `inline_s`, or the process is stopping, the end goes to
    `PendingEnds`. If that holds `max_tasks` ends already, the worker goes
    on trying, offering it again after each try, unless the process stops."""

    def __init__(self, pending: PendingEnds, stopping: threading.Event, task_id: str, end: dict,
                 error: str | None, expect: str | None):
        self.pending = pending
        self.stopping = stopping
        self.task_id = task_id
        self.end, self.error, self.expect = end, error, expect
        self.inline = tenacity.stop_before_delay(pending.policy.inline_s)
        self.said = False

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        if not (self.stopping.is_set() or self.inline(state)):
            return False
        refusal = state.outcome.result()  # type: ignore[union-attr]
        if self.pending.add(self.task_id, self.end, self.error, self.expect, refusal):
            return True
        if self.stopping.is_set():
            log.error("Task %s: its end is not recorded as the process stops (%s); "
                      "it stays running until recovered", self.task_id, refusal)
            return True
        if not self.said:
            log.warning("Task %s: storage refuses its end (%s) and end_retry_max_tasks ends wait "
                        "already; this worker keeps trying itself", self.task_id, refusal)
            self.said = True
        return False
