"""GET /tasks/{task_id}/events: the task's log, live.

Server-Sent Events by default (`id:` the seq, `event:` the type, `data:` the
JSON line), or newline-delimited JSON with `?format=ndjson`. A stream starts
after `Last-Event-ID` or `?after=SEQ`, sends each event as soon as it is
written, and ends after `task_end`. While nothing happens a stream sends a
keepalive every `stream_keepalive_s` (an SSE comment; a blank line in NDJSON,
which readers skip), so proxies keep it open and a client that went away is
noticed.
"""

from __future__ import annotations

import json
import re
import time
from typing import Iterator

import falcon

from storage import FINISHED, StorageError, TaskNotFound, TaskStore

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
        resp.stream = self._stream(task_id, cursor, fmt)

    def _after(self, req: falcon.Request) -> int:
        last_id = (req.get_header("Last-Event-ID") or "").strip()  # empty means none, as in SSE
        if last_id and req.get_param("after") is None:
            if not SEQ.fullmatch(last_id):
                raise falcon.HTTPBadRequest(description=f"Last-Event-ID must be an event seq, got {last_id[:40]!r}")
            return int(last_id)
        return int_param(req, "after", 0, low=0, high=MAX_SEQ)

    def _stream(self, task_id: str, cursor, fmt: str) -> Iterator[bytes]:
        """Yield events until task_end; the slot and the log are given back
        when the stream ends or the client goes away (waitress closes us)."""
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
                    if event["type"] == "task_end":
                        return
                now = time.monotonic()
                if events:
                    quiet_since = now
                elif now - last_check >= CHECK_S:
                    last_check = now
                    if self._finished_or_gone(task_id):
                        # A finished task's log is complete (events are written
                        # before the state): send what is left, then close.
                        for event in cursor.poll():
                            yield encode(event, fmt)
                        return
                if now - quiet_since >= keepalive:
                    yield KEEPALIVE[fmt]
                    quiet_since = now
                time.sleep(POLL_S)
        finally:
            cursor.close()
            self.budget.give_back()

    def _finished_or_gone(self, task_id: str) -> bool:
        try:
            return self.store.get(task_id)["status"] in FINISHED
        except (TaskNotFound, StorageError):
            return True


def encode(event: dict, fmt: str) -> bytes:
    line = json.dumps(event)  # ASCII-escaped: any stored text can be sent
    if fmt == "ndjson":
        return (line + "\n").encode()
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {line}\n\n".encode()
