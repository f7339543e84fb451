"""A small incremental Server-Sent Events parser, shared by both clients.

Feed it the body's bytes as they arrive, in chunks of any size; it returns the
events completed so far. It follows the WHATWG rules that matter here: lines
end with LF, CRLF or CR (even split across chunks); `data:` lines of one event
are joined with LF; lines starting with ":" are comments (keepalives); an
event is dispatched at a blank line, and only if it has data; the last event
id carries over to later events that name none.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

#: Only these end a line: other Unicode line breaks may be inside the data.
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None
    retry: int | None = None


class SSEParser:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._skip_lf = False  # the last chunk ended in CR: a leading LF belongs to it
        self._reset()
        self.last_id: str | None = None

    def _reset(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events that `chunk` completed, in order."""
        text = self._decoder.decode(chunk)
        if self._skip_lf and text:
            text = text[1:] if text.startswith("\n") else text
            self._skip_lf = False
        if not text:
            return []
        self._buffer += text
        events: list[ServerSentEvent] = []
        start = 0
        for end in _LINE_END.finditer(self._buffer):
            if end.group() == "\r" and end.end() == len(self._buffer):
                self._skip_lf = True  # a CRLF may be split across chunks
            event = self._line(self._buffer[start:end.start()])
            start = end.end()
            if event is not None:
                events.append(event)
        self._buffer = self._buffer[start:]  # an unfinished line waits for the next chunk
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\x00" not in value:
                self.last_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._reset()
            return None
        event = ServerSentEvent(event=self._event or "message", data="\n".join(self._data),
                                id=self.last_id, retry=self._retry)
        self._reset()
        return event
