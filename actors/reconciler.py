"""Send again the pending tasks whose message the broker lost.

A task is `pending` from its submit until a worker takes its message. A
Redis that restarts without persistence (or drops keys) loses the messages
of every task still waiting, and those tasks would stay `pending` forever:
embedded mode sends every pending task again at start (TaskSystem.recover),
but over Redis the queue outlives the processes, so no start does it.

One pass (`Reconciler.run_once`):
1. Candidates: the pending tasks (the store's index) pending longer than
   `requeue_after_s` (setting requeue_pending_after_s, default 60), counted
   from their creation or their last `requeued` event. A younger task may
   still be on its way into the queue: the web process stores a task first,
   then sends it.
2. What the broker holds (queue_view.py): every task with a message waiting,
   delayed, prefetched or being run, read in one atomic step.
3. Each candidate with no message is claimed (a claim lasts `requeue_after_s`,
   so a clock and a starting worker looking at once send it once), checked
   to be pending still, given a `requeued` event (`reason`, `message_id`,
   `pending_s`) and sent. The event comes first, so the log reads in the
   order things happened, and a task whose log cannot be written (a full
   disk) is not sent; a send that then fails (Redis gone again) is tried at
   the next pass after `requeue_after_s`, with an event of its own.

So each loss costs one send: once sent, the message is in the queue, and the
next pass finds it there. A task is never run twice even when a re-sent
message meets one that was not really lost (a worker had already taken it
into memory before Redis restarted): the runner starts a task only from
`pending`, under the task's lock, and ignores a message for a running task
that is not the one that started it (runner.py).

A task whose only message was dead-lettered (its run raised) was delivered,
not lost: it is not sent again (that would only repeat the failure); the
server log names it, once per process.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Callable, Protocol

import dramatiq
import redis

from storage import StorageError, TaskNotFound, TaskStore, parse_ts, system_clock

from .queue_view import Held, queue_view

log = logging.getLogger("aipy.reconciler")

#: The type of the event each re-send adds to the task's log.
REQUEUED = "requeued"


class QueueView(Protocol):
    def held(self) -> Held: ...

    def claim(self, task_id: str, ttl_s: float) -> bool: ...


def pending_s(store: TaskStore, task_id: str, now: datetime, *, since_requeue: bool = False) -> float:
    """How long the task has been pending: since its creation, or with
    `since_requeue` since its last re-send (reading its log, which for a
    pending task holds only those). -1 when it is gone or unreadable."""
    try:
        since = parse_ts(store.get(task_id)["created_at"])
        if since_requeue:
            for event in store.read_events(task_id):
                if event.get("type") == REQUEUED:
                    since = max(since, parse_ts(event["timestamp"]))
    except (TaskNotFound, StorageError, KeyError, ValueError):
        return -1.0
    return (now - since).total_seconds()


class Reconciler:
    """Finds the pending tasks no queue holds a message for and sends them
    again, once per loss. `requeue_after_s` (default 60) is how long a task
    must have been pending, since it was created or last re-sent; `view`
    (default: the one for the actor's broker) reads the queue; `clock`
    (default: UTC now) is there for tests."""

    def __init__(self, store: TaskStore, actor: dramatiq.Actor, *, requeue_after_s: float = 60.0,
                 view: QueueView | None = None, clock: Callable[[], datetime] = system_clock):
        self.store = store
        self.actor = actor
        self.requeue_after_s = requeue_after_s
        self.view = view if view is not None else queue_view(actor)
        self.clock = clock
        self._warned_dead: set[str] = set()
        # One pass at a time per reconciler (APScheduler runs one already;
        # this is for callers that share one across threads).
        self._pass = threading.Lock()

    @classmethod
    def from_settings(cls, store: TaskStore, actor: dramatiq.Actor, settings) -> "Reconciler":
        """A reconciler with the service's `requeue_pending_after_s`."""
        return cls(store, actor, requeue_after_s=settings.requeue_pending_after_s)

    def run_once(self) -> list[str]:
        """One pass; returns the ids of the tasks sent again. Never raises
        for an unreachable broker or storage: it logs, and the next pass
        tries again."""
        with self._pass:
            try:
                return self._pass_once()
            except (redis.RedisError, OSError) as exc:
                log.warning("Reconcile skipped: the task queue (Redis) is unreachable: %s", exc)
            except StorageError as exc:
                log.warning("Reconcile skipped: the task store cannot be read: %s", exc)
            return []

    def _pass_once(self) -> list[str]:
        now = self.clock()
        candidates = [task_id for task_id in self.store.ids_with_status("pending")
                      if pending_s(self.store, task_id, now) >= self.requeue_after_s]
        if not candidates:
            return []
        held = self.view.held()
        sent = []
        for task_id in candidates:
            if task_id in held.queued:
                continue
            if task_id in held.dead:
                self._warn_dead(task_id)
                continue
            if self._requeue(task_id, now):
                sent.append(task_id)
        if sent:
            log.warning("Sent %d pending task(s) again: their messages were lost (%s)", len(sent), ", ".join(sent))
        return sent

    def _requeue(self, task_id: str, now: datetime) -> bool:
        """Re-send one task with no message; True when it was sent."""
        waited_s = pending_s(self.store, task_id, now, since_requeue=True)
        if waited_s < self.requeue_after_s:
            return False  # re-sent lately: that message may be on its way
        if not self.view.claim(task_id, self.requeue_after_s):
            return False  # another reconciler is sending it right now
        try:
            if self.store.get(task_id)["status"] != "pending":
                return False  # started or cancelled since the pass began
        except (TaskNotFound, StorageError):
            return False
        message = self.actor.message(task_id)
        reason = (f"pending for {waited_s:.0f} s with no message in the queue: the broker lost it "
                  "(e.g. Redis restarted without its data); sent again")
        try:
            self.store.append_event(task_id, REQUEUED, {"reason": reason, "message_id": message.message_id,
                                                        "pending_s": round(waited_s, 1)})
        except (TaskNotFound, StorageError) as exc:
            log.error("Task %s lost its message but is not sent again: its log cannot be written: %s",
                      task_id, exc)
            return False
        try:
            self.actor.broker.enqueue(message)
        except (redis.RedisError, OSError) as exc:
            log.error("Task %s lost its message; sending it again failed (tried again in %g s): %s",
                      task_id, self.requeue_after_s, exc)
            return False
        return True

    def _warn_dead(self, task_id: str) -> None:
        if task_id not in self._warned_dead:
            self._warned_dead.add(task_id)
            log.warning("Task %s is pending but its message was dead-lettered (its run raised on a worker; "
                        "see that worker's log): it is not sent again", task_id)
