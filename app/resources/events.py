"""GET /tasks/{task_id}/events: the task's log, live.

Server-Sent Events by default (`id:` the seq, `event:` the type, `data:` the
JSON line), or newline-delimited JSON with `?format=ndjson`. A stream starts
after `Last-Event-ID` or `?after=SEQ`, sends each event as soon as it is
written, and ends after `task_end` — or, for a task submitted with a
`callback_url`, after the `callback` event of the delivery's last attempt
(delivered, or no retry left), since those come after `task_end` and a
follower should see whether its webhook was reached (see `StreamEnd`).
While nothing happens a stream sends a keepalive every `stream_keepalive_s`
(an SSE comment; a blank line in NDJSON, which readers skip), so proxies keep
it open and a client that went away is noticed.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Iterator

import falcon

from storage import FINISHED, StorageError, TaskNotFound, TaskStore
from storage.results import callback_state

from ..requests import int_param
from ..waiting import POLL_S, WaitBudget

FORMATS = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}

#: What a quiet stream sends now and then: an SSE comment, a blank NDJSON line.
KEEPALIVE = {"sse": b": keepalive\n\n", "ndjson": b"\n"}

MAX_SEQ = 10**12
SEQ = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also takes "²"

#: How often a quiet stream checks that its task still exists and can end.
CHECK_S = 1.0


class TaskEvents:
    def __init__(self, system, budget: WaitBudget):
        self.store: TaskStore = system.store
        self.settings = system.settings
        self.budget = budget

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        fmt = req.get_param("format") or "sse"
        if fmt not in FORMATS:
            raise falcon.HTTPBadRequest(description=f"query parameter format must be sse or ndjson, got {fmt!r}")
        after = self._after(req)
        cursor = self.store.follow_events(task_id, after)
        if not self.budget.try_take():
            cursor.close()
            raise falcon.HTTPServiceUnavailable(
                description=f"too many open event streams and waits ({self.budget.limit}, max_streams); try again later"
            )
        resp.content_type = FORMATS[fmt]
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")  # tell nginx not to buffer the stream
        # A callback attempt not recorded by its due time plus its own time
        # limit and max_wait_s (the longest the API otherwise holds a
        # request) is taken as lost, and ends the stream (see StreamEnd).
        overdue_s = self.settings.callback_timeout_s + self.settings.max_wait_s
        end = StreamEnd(self.store, task_id, after, overdue_s=overdue_s)
        resp.stream = self._stream(cursor, end, fmt)

    def _after(self, req: falcon.Request) -> int:
        last_id = (req.get_header("Last-Event-ID") or "").strip()  # empty means none, as in SSE
        if last_id and req.get_param("after") is None:
            if not SEQ.fullmatch(last_id):
                raise falcon.HTTPBadRequest(description=f"Last-Event-ID must be an event seq, got {last_id[:40]!r}")
            return int(last_id)
        return int_param(req, "after", 0, low=0, high=MAX_SEQ)

    def _stream(self, cursor, end: "StreamEnd", fmt: str) -> Iterator[bytes]:
        """Yield events until `end` says the stream is complete; the slot and
        the log are given back when the stream ends or the client goes away
        (waitress closes us)."""
        keepalive = self.settings.stream_keepalive_s
        quiet_since = time.monotonic()
        last_check = quiet_since - CHECK_S  # check at once: the caller may be past the end already
        try:
            # Waitress sends the headers with the first non-empty chunk (as
            # PEP 3333 asks), so the stream opens with a keepalive at once.
            yield KEEPALIVE[fmt]
            while True:
                events = cursor.poll()
                for event in events:
                    yield encode(event, fmt)
                    end.see(event)
                now = time.monotonic()
                if events:
                    quiet_since = now
                elif now - last_check >= CHECK_S:
                    last_check = now
                    end.check()
                    # Events are written before the state: once the state
                    # says finished (or the task is gone), the log holds all
                    # that led there, so send what is left before deciding.
                    for event in cursor.poll():
                        yield encode(event, fmt)
                        end.see(event)
                if end.done():
                    return
                if now - quiet_since >= keepalive:
                    yield KEEPALIVE[fmt]
                    quiet_since = now
                time.sleep(POLL_S)
        finally:
            cursor.close()
            self.budget.give_back()


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

    def __init__(self, store: TaskStore, task_id: str, after: int, *, overdue_s: float):
        self.store = store
        self.task_id = task_id
        self.after = after
        self.overdue_s = overdue_s
        self.ended = False
        self.gone = False
        self.callback_url: str | None = None
        self.ended_at: float | None = None  # unix time of the task's end
        self.last_callback: dict | None = None

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
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def encode(event: dict, fmt: str) -> bytes:
    line = json.dumps(event)  # ASCII-escaped: any stored text can be sent
    if fmt == "ndjson":
        return (line + "\n").encode()
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {line}\n\n".encode()
