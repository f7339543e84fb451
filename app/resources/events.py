"""GET /tasks/{task_id}/events: the task's log, live (see app/event_stream.py
for when a stream ends).

Server-Sent Events by default (`id:` the seq, `event:` the type, `data:` the
JSON line), or newline-delimited JSON with `?format=ndjson`. A stream starts
after `Last-Event-ID` or `?after=SEQ`. While nothing happens it sends a
keepalive every `stream_keepalive_s` (an SSE comment; a blank line in NDJSON,
which readers skip), so proxies keep it open and a client that went away is
noticed.
"""

from __future__ import annotations

import json
import re
from typing import Iterator

import falcon

from ..event_stream import EventFeed
from ..requests import int_param

FORMATS = {"sse": "text/event-stream", "ndjson": "application/x-ndjson"}

#: What a quiet stream sends now and then: an SSE comment, a blank NDJSON line.
KEEPALIVE = {"sse": b": keepalive\n\n", "ndjson": b"\n"}

MAX_SEQ = 10**12
SEQ = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also takes "²"


class TaskEvents:
    def __init__(self, feed: EventFeed):
        self.feed = feed

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        fmt = req.get_param("format") or "sse"
        if fmt not in FORMATS:
            raise falcon.HTTPBadRequest(description=f"query parameter format must be sse or ndjson, got {fmt!r}")
        events = self.feed.open(task_id, self._after(req))
        resp.content_type = FORMATS[fmt]
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")  # tell nginx not to buffer the stream
        resp.stream = _encoded(events, fmt)

    def _after(self, req: falcon.Request) -> int:
        last_id = (req.get_header("Last-Event-ID") or "").strip()  # empty means none, as in SSE
        # A malformed header is refused even when ?after= wins over it: a
        # client sending one has a bug worth hearing about.
        if last_id and not SEQ.fullmatch(last_id):
            raise falcon.HTTPBadRequest(description=f"Last-Event-ID must be an event seq, got {last_id[:40]!r}")
        if last_id and req.get_param("after") is None:
            return int(last_id)
        return int_param(req, "after", 0, low=0, high=MAX_SEQ)


def _encoded(events: Iterator[dict | None], fmt: str) -> Iterator[bytes]:
    """Waitress sends the headers with the first non-empty chunk (as PEP 3333
    asks); the feed opens with a keepalive, so they go at once. Closing this
    (waitress does when the client goes away) closes the feed too."""
    try:
        for event in events:
            yield KEEPALIVE[fmt] if event is None else encode(event, fmt)
    finally:
        events.close()


def encode(event: dict, fmt: str) -> bytes:
    line = json.dumps(event)  # ASCII-escaped: any stored text can be sent
    if fmt == "ndjson":
        return (line + "\n").encode()
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {line}\n\n".encode()
