"""What the API answers, as frozen dataclasses.

Each type is built from the JSON with `from_json`, tolerantly: unknown fields
are ignored and missing ones take a default, so a newer server does not break
an older client. Every object keeps the dict it came from as `.raw`, for the
fields this version of the SDK does not know yet.

Timestamps are kept as the server sends them: UTC ISO 8601 strings such as
"2024-01-01T12:00:05.123Z".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

#: The statuses a task never leaves.
FINISHED = ("completed", "error", "cancelled")


def _raw() -> Any:
    return field(default_factory=dict, repr=False, compare=False)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True, kw_only=True)
class Task:
    """A task's status: `GET /tasks/{id}` (and each entry of a listing)."""

    task_id: str
    instruction: str = ""
    status: str = "pending"
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None
    raw: dict[str, Any] = _raw()

    @property
    def finished(self) -> bool:
        """True once the task is completed, error or cancelled."""
        return self.status in FINISHED

    @classmethod
    def _fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return dict(
            task_id=str(data.get("task_id", "")),
            instruction=str(data.get("instruction") or ""),
            status=str(data.get("status") or "pending"),
            created_at=_str(data.get("created_at")),
            started_at=_str(data.get("started_at")),
            completed_at=_str(data.get("completed_at")),
            error=_str(data.get("error")),
            raw=dict(data),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Task":
        return cls(**cls._fields(data))


@dataclass(frozen=True, kw_only=True)
class Event:
    """One event of a task: streamed by `stream_events` (with its `seq`,
    counting from 1) or listed in `TaskOutput.messages` (where `seq` is None).

    `type` is task_start, llm_response, exec_start, exec_result, error or
    task_end; `content` holds that event's fields.
    """

    type: str
    content: dict[str, Any] = field(default_factory=dict)
    timestamp: str | None = None
    seq: int | None = None
    raw: dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Event":
        seq = data.get("seq")
        return cls(
            type=str(data.get("type") or ""),
            content=_dict(data.get("content")),
            timestamp=_str(data.get("timestamp")),
            seq=None if seq is None else _int(seq),
            raw=dict(data),
        )


@dataclass(frozen=True, kw_only=True)
class BlockResult:
    """The outcome of one executed code block; `result` holds `status`
    (success, error, timeout or cancelled), `output`, `stdout`, `stderr`,
    `returncode` and `duration_ms`."""

    block_name: str | None = None
    language: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = _raw()

    @property
    def status(self) -> str | None:
        return _str(self.result.get("status"))

    @property
    def output(self) -> str:
        return str(self.result.get("output") or "")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "BlockResult":
        return cls(block_name=_str(data.get("block_name")), language=_str(data.get("language")),
                   result=_dict(data.get("result")), raw=dict(data))


@dataclass(frozen=True, kw_only=True)
class ErrorInfo:
    """An error that happened while the task ran."""

    message: str = ""
    exception: str | None = None
    raw: dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ErrorInfo":
        return cls(message=str(data.get("message") or ""), exception=_str(data.get("exception")), raw=dict(data))


@dataclass(frozen=True, kw_only=True)
class CallbackDelivery:
    """Where the delivery of a task's `callback_url` stands.

    `state` is pending (no attempt yet), retrying (the last attempt failed and
    another is due at `next_attempt_at`), delivered, or failed (no retry
    left); `status_code` and `error` describe the last attempt; `url` is the
    callback URL with any password in it shown as ***.
    """

    url: str = ""
    state: str = "pending"
    attempts: int = 0
    delivered: bool = False
    status_code: int | None = None
    error: str | None = None
    last_attempt_at: str | None = None
    next_attempt_at: str | None = None
    raw: dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CallbackDelivery":
        status_code = data.get("status_code")
        return cls(url=str(data.get("url") or ""), state=str(data.get("state") or "pending"),
                   attempts=_int(data.get("attempts")), delivered=data.get("delivered") is True,
                   status_code=None if status_code is None else _int(status_code), error=_str(data.get("error")),
                   last_attempt_at=_str(data.get("last_attempt_at")),
                   next_attempt_at=_str(data.get("next_attempt_at")), raw=dict(data))


@dataclass(frozen=True, kw_only=True)
class TaskOutput:
    """Everything a task did: its events in order, one result per code
    block, its errors, the metadata (yours plus the run's), the final answer
    and, for a task submitted with `callback_url`, the callback's delivery
    (`callback`; None otherwise)."""

    messages: tuple[Event, ...] = ()
    results: tuple[BlockResult, ...] = ()
    errors: tuple[ErrorInfo, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None
    callback: CallbackDelivery | None = None
    raw: dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TaskOutput":
        callback = data.get("callback")
        return cls(
            messages=tuple(Event.from_json(m) for m in _list(data.get("messages")) if isinstance(m, Mapping)),
            results=tuple(BlockResult.from_json(r) for r in _list(data.get("results")) if isinstance(r, Mapping)),
            errors=tuple(ErrorInfo.from_json(e) for e in _list(data.get("errors")) if isinstance(e, Mapping)),
            metadata=_dict(data.get("metadata")),
            answer=_str(data.get("answer")),
            callback=CallbackDelivery.from_json(callback) if isinstance(callback, Mapping) else None,
            raw=dict(data),
        )


@dataclass(frozen=True, kw_only=True)
class TaskResult(Task):
    """A task's status plus its `output`: `GET /tasks/{id}/result`."""

    output: TaskOutput = field(default_factory=TaskOutput)

    @property
    def answer(self) -> str | None:
        """The final answer (`output.answer`); None until the task completed."""
        return self.output.answer

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TaskResult":
        return cls(**cls._fields(data), output=TaskOutput.from_json(_dict(data.get("output"))))


@dataclass(frozen=True, kw_only=True)
class Submission:
    """The answer to `POST /tasks`: the new task's id."""

    task_id: str
    status: str = "pending"
    message: str = ""
    raw: dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Submission":
        return cls(task_id=str(data.get("task_id", "")), status=str(data.get("status") or "pending"),
                   message=str(data.get("message") or ""), raw=dict(data))


@dataclass(frozen=True, kw_only=True)
class Cancellation:
    """The answer to `DELETE /tasks/{id}`; `status` is the task's status
    after the cancel (cancelled, or running while it is still stopping)."""

    task_id: str
    message: str = ""
    status: str | None = None
    raw: dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any], task_id: str = "") -> "Cancellation":
        return cls(task_id=str(data.get("task_id") or task_id), message=str(data.get("message") or ""),
                   status=_str(data.get("status")), raw=dict(data))


@dataclass(frozen=True, kw_only=True)
class TaskPage:
    """One page of `GET /tasks`, newest first. Iterating it yields its tasks."""

    tasks: tuple[Task, ...] = ()
    total: int = 0
    limit: int = 0
    offset: int = 0
    raw: dict[str, Any] = _raw()

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TaskPage":
        entries = data.get("tasks")
        if isinstance(entries, Mapping):  # {id: summary}, as the spec has it
            entries = [{"task_id": key, **value} for key, value in entries.items() if isinstance(value, Mapping)]
        tasks = tuple(Task.from_json(t) for t in _list(entries) if isinstance(t, Mapping))
        return cls(tasks=tasks, total=_int(data.get("total"), len(tasks)), limit=_int(data.get("limit")),
                   offset=_int(data.get("offset")), raw=dict(data))


@dataclass(frozen=True, kw_only=True)
class FileInfo:
    """A file the task's code left in its workspace; `path` uses / separators."""

    path: str
    size: int = 0
    modified: str | None = None
    raw: dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "FileInfo":
        return cls(path=str(data.get("path", "")), size=_int(data.get("size")),
                   modified=_str(data.get("modified")), raw=dict(data))
