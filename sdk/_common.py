"""What the sync and the async client share: building requests, reading
answers, and the bookkeeping of waits and event streams. No I/O happens here."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterator, Mapping, Union
from urllib.parse import quote

import httpx
import tenacity
from httpx_sse import ServerSentEvent, SSEError

from .errors import AgentError, ConnectionFailed, TaskTimeout, error_for
from .types import Event

DEFAULT_URL = "http://127.0.0.1:8848"
USER_AGENT = "aipython-agent-sdk/1.0"

#: How long an event stream may stay silent before it counts as dropped;
#: the server sends a keepalive every 15 s by default (stream_keepalive_s).
STREAM_READ_TIMEOUT = 60.0
#: Reconnects in a row, without an event in between, before giving up.
STREAM_RECONNECTS = 5
#: When an event stream reconnects: 0.1 s after the first failure in a row,
#: then 0.4 s, 1.6 s, then every 4 s; the failure after STREAM_RECONNECTS
#: reconnects ends the stream. Only its `wait` and `stop` are used: the
#: clients sleep themselves (time.sleep or asyncio.sleep), between events
#: they yield, which a Retrying loop cannot span.
RECONNECTING = tenacity.Retrying(wait=tenacity.wait_exponential(multiplier=0.1, exp_base=4, max=4.0),
                                 stop=tenacity.stop_after_attempt(STREAM_RECONNECTS + 1))
#: A wait the server answered this much sooner than asked (it was busy, or
#: it ignores `wait`) is followed by a pause, so waiting never becomes busy polling.
QUICK_ANSWER_S = 0.5
PAUSE_S = 1.0


def client_options(base_url: str, token: str | None, timeout: float | httpx.Timeout | None) -> dict[str, Any]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": timeout}


def task_path(task_id: str, *rest: str) -> str:
    return "/".join(["/tasks", quote(str(task_id), safe=""), *rest])


def file_path(task_id: str, path: str) -> str:
    return task_path(task_id, "files", quote(path.lstrip("/"), safe="/"))


def seconds(value: float) -> str:
    """A `wait=` value: seconds with millisecond precision."""
    return f"{max(value, 0.0):.3f}"


def submission(instruction: str, metadata: dict | None, options: dict[str, Any],
               idempotency_key: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers of `POST /tasks`; options left at None are not sent."""
    body: dict[str, Any] = {"instruction": instruction, "metadata": dict(metadata or {})}
    body.update({name: value for name, value in options.items() if value is not None})
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return body, headers


#: What `files=` maps each path to: the bytes, a file opened in binary mode,
#: or the name of a local file (str or path).
FileSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", BinaryIO]


def task_content(body: dict[str, Any], files: Mapping[str, FileSource] | None) -> dict[str, Any]:
    """How `POST /tasks` carries `body`: JSON, or with `files` (path in the
    task's folder -> content) multipart/form-data, the body as the part
    `task` and each file as a part with its path as the file name."""
    if not files:
        return {"json": body}
    parts = [("file", (path, file_bytes(path, source), "application/octet-stream")) for path, source in files.items()]
    return {"data": {"task": json.dumps(body)}, "files": parts}


def file_bytes(path: str, source: FileSource) -> bytes:
    """The content of the file to send as `path`, read from `source`."""
    if not isinstance(path, str):
        raise TypeError(f"files: each key is the file's path in the task's folder (a str), not {type(path).__name__}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes()
    data = source.read()
    if not isinstance(data, bytes):
        raise TypeError(f"files[{path!r}]: open the file in binary mode ('rb')")
    return data


def read_json(response: httpx.Response) -> Any:
    """The answer's JSON; an error status raises the matching `APIError`."""
    if response.status_code >= 400:
        raise error_for(response)
    try:
        return response.json()
    except ValueError:
        raise AgentError(f"{response.request.method} {response.request.url} answered "
                         f"{response.status_code} with a body that is not JSON") from None


@contextlib.contextmanager
def transport_errors(base_url: Any) -> Iterator[None]:
    """httpx's transport errors as `ConnectionFailed`."""
    try:
        yield
    except httpx.TransportError as exc:
        raise ConnectionFailed(f"no answer from {str(base_url).rstrip('/')}: {exc or type(exc).__name__}") from exc


def with_read(timeout: httpx.Timeout, read: float | None, *, add: bool = True) -> httpx.Timeout:
    """`timeout` with its read timeout extended by `read` seconds (or set to it)."""
    if add:
        read = None if timeout.read is None or read is None else timeout.read + read
    return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)


class Deadline:
    """How much of a caller's `timeout` (None: no limit) is left, step by step."""

    def __init__(self, task_id: str, timeout: float | None):
        self.task_id = task_id
        self.timeout = timeout
        self.ends = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self.ends is None else max(0.0, self.ends - time.monotonic())

    def step(self, wait_step: float) -> float:
        left = self.remaining()
        return wait_step if left is None else min(wait_step, left)

    def expired(self) -> bool:
        return self.ends is not None and time.monotonic() >= self.ends

    def timed_out(self, status: str | None) -> TaskTimeout:
        return TaskTimeout(self.task_id, self.timeout or 0.0, status)

    def pause_after(self, asked: float, took: float) -> float:
        """The pause before the next wait when the server answered early."""
        if asked <= 0 or took >= min(asked * 0.5, QUICK_ANSWER_S):
            return 0.0
        left = self.remaining()
        return PAUSE_S if left is None else min(PAUSE_S, left)


class StreamState:
    """Where an event stream is, so a dropped connection resumes right after
    the last event received (`Last-Event-ID`), and repeats are skipped."""

    def __init__(self, task_id: str, after: int, base_url: Any):
        self.task_id = task_id
        self.base_url = str(base_url).rstrip("/")
        self.last = max(int(after), 0)
        self.connected = False
        self._failures = self._no_failures()

    @staticmethod
    def _no_failures() -> tenacity.RetryCallState:
        """A fresh count of failures in a row (tenacity's attempt number)."""
        return tenacity.RetryCallState(RECONNECTING, None, (), {})

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.last:
            headers["Last-Event-ID"] = str(self.last)
        return headers

    def accept(self, sse: ServerSentEvent) -> Event | None:
        """The event, or None for one already seen or not an event: httpx-sse
        also hands over the blank line after a keepalive (no data) once an
        event id was seen."""
        try:
            data = json.loads(sse.data)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        data.setdefault("type", sse.event)
        if data.get("seq") is None and sse.id.isdigit():
            data["seq"] = int(sse.id)
        event = Event.from_json(data)
        if event.seq is not None:
            if event.seq <= self.last:
                return None
            self.last = event.seq
        self._failures = self._no_failures()
        return event

    def dropped(self, error: Exception | None) -> float:
        """The pause before reconnecting, or `ConnectionFailed` when the
        server was never reached or has failed too often in a row. `error`
        is the transport error, None when the stream just ended early."""
        reason = (str(error) or type(error).__name__) if error is not None else ""
        if error is not None and not self.connected:
            raise ConnectionFailed(f"no answer from {self.base_url}: {reason}") from error
        if RECONNECTING.stop(self._failures):
            if error is not None:
                raise ConnectionFailed(f"event stream of task {self.task_id} lost: {reason}") from error
            raise ConnectionFailed(f"event stream of task {self.task_id} keeps ending before task_end")
        pause = RECONNECTING.wait(self._failures)
        self._failures.prepare_for_next_attempt()
        return pause

    def not_a_stream(self, error: SSEError) -> AgentError:
        """What httpx-sse's refusal of an answer that is not text/event-stream
        (a proxy's page, say) means to the caller; reconnecting would not help."""
        return AgentError(f"{self.base_url} answered the events of task {self.task_id} "
                          f"without an event stream: {error}")


def destination(dest: str | Path, path: str) -> Path:
    """Where `download_file_to` writes: `dest`, or the file's name inside it
    when `dest` is a directory."""
    target = Path(dest)
    return target / PurePosixPath(path).name if target.is_dir() else target


def partial(target: Path) -> Path:
    """The temporary name a download is written to before it is renamed."""
    return target.with_name(f".{target.name}.part")
