"""A task's events, live: what `GET /tasks/{task_id}/events` sends, and
when the stream is complete (`StreamEnd`). Encoding them as SSE or NDJSON is
the resource's job; here they are plain dicts, with None for each moment a
quiet stream should send a keepalive.

A stream starts after a given seq, yields each event as soon as it is
written, and ends after `task_end`, or, for a task submitted with a
`callback_url`, after the `callback` event of the delivery's last attempt
(delivered, or no retry left), since those come after `task_end` and a
follower should see whether its webhook was reached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

from storage import FINISHED, StorageError, TaskNotFound, TaskStore, callback_state, parse_ts

from .waiting import POLL_S, TooBusy, WaitBudget

#: How often a quiet stream checks that its task still exists and can end.
CHECK_S = 1.0


class EventFeed:
    """Opens live event streams, at most `budget` at once (shared with waits).
    `keepalive_s`: the longest a stream stays silent (default 15).
    `overdue_s`: how long past its due time a callback attempt not recorded
    counts as lost and ends the stream (the callback timeout plus max_wait_s)."""

    def __init__(self, store: TaskStore, budget: WaitBudget, *, keepalive_s: float = 15.0, overdue_s: float = 70.0):
        self.store = store
        self.budget = budget
        self.keepalive_s = keepalive_s
        self.overdue_s = overdue_s

    def open(self, task_id: str, after: int) -> Iterator[dict | None]:
        """The events after seq `after`, live; None where a keepalive is due.
        Raises TaskNotFound, or TooBusy when the budget has no slot free.
        The first item is a keepalive, so the caller can send headers at once."""
        cursor = self.store.follow_events(task_id, after)
        if not self.budget.try_take():
            cursor.close()
            raise TooBusy(f"too many open event streams and waits ({self.budget.limit}, max_streams); try again later")
        return self._stream(cursor, StreamEnd(self.store, task_id, after, overdue_s=self.overdue_s))

    def _stream(self, cursor, end: "StreamEnd") -> Iterator[dict | None]:
        """Yield events until `end` says the stream is complete; the slot and
        the log are given back when the stream ends or is closed early (the
        client went away)."""
        quiet_since = time.monotonic()
        last_check = quiet_since - CHECK_S  # check at once: the caller may be past the end already
        try:
            yield None
            while True:
                events = cursor.poll()
                yield from _seen(events, end)
                now = time.monotonic()
                if events:
                    quiet_since = now
                elif now - last_check >= CHECK_S:
                    last_check = now
                    end.check()
                    # Events are written before the state: once the state
                    # says finished (or the task is gone), the log holds all
                    # that led there, so send what is left before deciding.
                    yield from _seen(cursor.poll(), end)
                if end.done():
                    return
                if now - quiet_since >= self.keepalive_s:
                    yield None
                    quiet_since = now
                time.sleep(POLL_S)
        finally:
            cursor.close()
            self.budget.give_back()


def _seen(events: list[dict], end: "StreamEnd") -> Iterator[dict]:
    for event in events:
        yield event
        end.see(event)


@dataclass
class StreamEnd:
    """When a task's event stream is complete: once the task has ended
    (its `task_end` was sent, or its state says finished), and, for a task
    with a `callback_url`, once the last `callback` event says the delivery
    is settled (delivered, or no retry left); at once when the task is gone.

    A delivery that never reports (its message lost to an embedded server's
    restart between retries, or never queued) must not hold a stream and its
    thread forever: an attempt counts as lost, and the stream ends, once it
    is `overdue_s` past its due time (the previous attempt's time plus its
    `next_attempt_in_s`, or the task's end for the first). The wall clock is
    used because a resumed stream reads events written long before it began.
    """

    store: TaskStore
    task_id: str
    after: int
    overdue_s: float
    ended: bool = False
    gone: bool = False
    callback_url: str | None = None
    ended_at: float | None = None  # unix time of the task's end
    last_callback: dict | None = None

    def see(self, event: dict) -> None:
        """Note an event the stream sent."""
        if event["type"] == "callback":
            self.last_callback = event
        elif event["type"] == "task_end" and not self.ended:
            self._ended(_unix(event.get("timestamp")), seen_end=True)

    def check(self) -> None:
        """Look at the task itself (now and then, while the stream is quiet):
        a stream resumed past `task_end` learns here that the task ended,
        and any stream that its task was removed."""
        try:
            state = self.store.get(self.task_id)
        except (TaskNotFound, StorageError):
            self.gone = True
            return
        if not self.ended and state["status"] in FINISHED:
            self._ended(_unix(state.get("completed_at")), seen_end=False, state=state)

    def done(self) -> bool:
        if self.gone:
            return True
        if not self.ended:
            return False
        if not self.callback_url:
            return True
        if callback_state(self.last_callback) in ("delivered", "failed"):
            return True
        return time.time() > self._attempt_due() + self.overdue_s

    def _ended(self, at: float | None, *, seen_end: bool, state: dict | None = None) -> None:
        self.ended = True
        self.ended_at = at if at is not None else time.time()
        try:
            state = state or self.store.get(self.task_id)
            self.callback_url = state.get("callback_url")
            if self.callback_url and not seen_end and self.after > 0:
                # Resumed past task_end: the attempts made so far were
                # before `after`, so the cursor will not show them.
                for event in self.store.read_events(self.task_id):
                    if event["type"] == "callback":
                        self.last_callback = event
        except (TaskNotFound, StorageError):
            self.gone = True

    def _attempt_due(self) -> float:
        """Unix time the next callback attempt should have been made by."""
        if self.last_callback is None:
            return self.ended_at or time.time()
        content = self.last_callback.get("content") or {}
        delay = content.get("next_attempt_in_s")
        sent = _unix(self.last_callback.get("timestamp")) or self.ended_at or time.time()
        return sent + (delay if isinstance(delay, (int, float)) else 0)


def _unix(timestamp: object) -> float | None:
    """A stored timestamp (``2024-01-01T12:00:05.123Z``) as unix time."""
    if not isinstance(timestamp, str):
        return None
    try:
        return parse_ts(timestamp).timestamp()
    except ValueError:
        return None
