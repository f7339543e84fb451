"""The API's request and response bodies, as pydantic models.

Requests are validated with these; responses are shaped by them, so the field
names here are the spec's, exactly. Extra request fields are refused, so a
typo (`instructions`) gets a clear 400 instead of being silently ignored.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from storage import STATUS_FIELDS, Status


class FileUpload(BaseModel):
    """One file handed in with a task, as JSON."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="Where in the workspace (sub-folders allowed, no '..').")
    content_base64: str = Field(description="The file's bytes, base64-encoded.")


class TaskSubmission(BaseModel):
    """POST /tasks. `llm`, `role`, `max_rounds` and `timeout_s` override the
    service's settings for this task only."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    # The patterns below only document rules the resource checks with its
    # own messages (not blank; http or https), so checkers generate valid input.
    instruction: str = Field(min_length=1, json_schema_extra={"pattern": r"\S"},
                             description="What the agent should do, in natural language (not blank).")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Anything the caller wants echoed back.")
    llm: str | None = Field(None, min_length=1, description="Provider name from llm.json (default: its default).")
    role: str | None = Field(None, min_length=1, description="System role text for this task.")
    max_rounds: int | None = Field(None, ge=1, le=1000, description="LLM rounds before the task ends as error.")
    timeout_s: float | None = Field(None, gt=0, description="The task's time limit in seconds.")
    callback_url: str | None = Field(
        None, min_length=1, max_length=2048,
        json_schema_extra={"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},
        description="When the task finishes, its result JSON is POSTed here (e.g. n8n's $execution.resumeUrl): "
                    "an http or https URL whose host callback_allowed_hosts allows (by default: public hosts only).",
    )

    previous_task_id: str | None = Field(
        None, min_length=1, max_length=64,
        description="Continue a finished task: this task starts with its conversation and a copy of its files.",
    )
    files: list[FileUpload] | None = Field(
        None, description="Files saved in the task's workspace before it starts (JSON clients; "
                          "multipart/form-data requests send file parts instead).",
    )

    def options(self) -> dict[str, Any]:
        return self.model_dump(include={"llm", "role", "max_rounds", "timeout_s"}, exclude_none=True)


class SubmitResponse(BaseModel):
    task_id: str
    status: Status
    message: str


class TaskSummary(BaseModel):
    task_id: str
    instruction: str
    status: Status
    created_at: str
    started_at: str | None
    completed_at: str | None


class TaskStatus(TaskSummary):
    error: str | None
    # Shown only for a follow-up, so every other task keeps the spec's shape.
    previous_task_id: str | None = Field(None, exclude_if=lambda value: value is None,
                                         description="The task this one continues (follow-ups only).")


class CallbackSummary(BaseModel):
    """Where the delivery of the task's `callback_url` stands, kept up to
    date from its `callback` events (which come after `task_end`)."""

    url: str = Field(description="The callback URL, a password in it shown as ***.")
    state: Literal["pending", "retrying", "delivered", "failed"] = Field(
        description="pending: no attempt yet; retrying: the last attempt failed and another is due; "
                    "delivered; failed: no retry left.")
    attempts: int = Field(description="Delivery attempts made so far.")
    delivered: bool
    status_code: int | None = Field(description="HTTP status of the last attempt, when an answer came.")
    error: str | None = Field(description="Why the last attempt failed, in a few words (as in its callback event).")
    last_attempt_at: str | None
    next_attempt_at: str | None = Field(description="When the next attempt is due; null when none is.")


class TaskOutput(BaseModel):
    messages: list[dict[str, Any]]
    results: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    metadata: dict[str, Any]
    answer: str | None
    callback: CallbackSummary | None = Field(None, description="Null for a task submitted without callback_url.")


class TaskResult(TaskStatus):
    output: TaskOutput


class TaskList(BaseModel):
    tasks: dict[str, TaskSummary]
    total: int
    limit: int
    offset: int


class FileInfo(BaseModel):
    path: str = Field(description="Path inside the task's workspace, with / separators.")
    size: int
    modified: str


class FileList(BaseModel):
    task_id: str
    files: list[FileInfo]
    truncated: bool = Field(description="True when more files exist than max_listed_files.")


class MessageResponse(BaseModel):
    message: str


class CancelResponse(MessageResponse):
    status: Status


class ErrorResponse(BaseModel):
    detail: str


def shape(model: type[BaseModel], data: dict) -> dict:
    """`data` reduced to the model's fields, validated on the way out."""
    return model.model_validate(data, from_attributes=False).model_dump(mode="json")


def status_body(state: dict) -> bytes:
    """GET /tasks/{id}'s body: the JSON of `shape(TaskStatus, state)`, made
    without a pydantic round trip, because the store has already checked
    every field it copies (storage/states.py `state_problem`). A state that
    could still fail the model (a stray previous_task_id) takes the model's
    path, and so its error."""
    previous = state.get("previous_task_id")
    if previous is not None and not isinstance(previous, str):
        return json.dumps(shape(TaskStatus, state)).encode()
    body = {field: state.get(field) for field in STATUS_FIELDS}
    if previous is not None:
        body["previous_task_id"] = previous
    return json.dumps(body).encode()
