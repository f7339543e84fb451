"""The task endpoints: submit, list, status, result and cancel."""

from __future__ import annotations

import logging
import time

import falcon

from actors.system import BrokerUnavailable
from storage import FINISHED, STATUSES, InvalidTransition

from ..models import CancelResponse, SubmitResponse, TaskList, TaskResult, TaskStatus, TaskSubmission, shape
from ..requests import int_param, json_body

log = logging.getLogger("aipy.tasks")


class TaskCollection:
    """POST /tasks and GET /tasks."""

    def __init__(self, system):
        self.system = system
        self.store = system.store
        self.settings = system.settings

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        submission = json_body(req, TaskSubmission, self.settings.max_body_bytes)
        self._check(submission)
        state = self.store.create(submission.instruction, submission.metadata, submission.options())
        task_id = state["task_id"]
        try:
            self.system.submit(task_id)
        except BrokerUnavailable as exc:
            # The caller gets no task id, so the task must not linger.
            self.store.delete(task_id)
            log.error("Task %s not queued: %s", task_id, exc)
            raise falcon.HTTPServiceUnavailable(description=f"{exc}; nothing was stored, try again later") from None
        log.info("Task submitted: %s", task_id)
        resp.media = shape(SubmitResponse, {"task_id": task_id, "status": "pending", "message": "Task submitted successfully"})

    def _check(self, submission: TaskSubmission) -> None:
        limit = self.settings.max_instruction_chars
        if len(submission.instruction) > limit:
            raise falcon.HTTPBadRequest(
                description=f"instruction: {len(submission.instruction)} characters; the limit is {limit} (max_instruction_chars)"
            )
        if not submission.instruction.strip():
            raise falcon.HTTPBadRequest(description="instruction: must not be blank")
        if submission.llm is not None and submission.llm not in self.system.config.llm.providers:
            known = ", ".join(sorted(self.system.config.llm.providers))
            raise falcon.HTTPBadRequest(description=f"llm: unknown provider {submission.llm!r}; configured: {known}")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise falcon.HTTPBadRequest(description=f"query parameter status must be one of {', '.join(STATUSES)}; got {status!r}")
        limit = int_param(req, "limit", self.settings.list_default_limit, low=1, high=self.settings.list_max_limit)
        offset = int_param(req, "offset", 0, low=0, high=10**9)
        page, total = self.store.list(status=status, limit=limit, offset=offset)
        resp.media = shape(TaskList, {
            "tasks": {task["task_id"]: task for task in page},
            "total": total, "limit": limit, "offset": offset,
        })


class TaskItem:
    """GET /tasks/{task_id} and DELETE /tasks/{task_id} (cancel)."""

    def __init__(self, system):
        self.store = system.store
        self.settings = system.settings

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        resp.media = shape(TaskStatus, self.store.get(task_id))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        try:
            state = self.store.request_cancel(task_id)
        except InvalidTransition as exc:
            raise falcon.HTTPBadRequest(
                description=f"Task {task_id} is already {exc.current} and cannot be cancelled"
            ) from None
        if state["status"] == "running":
            state = self._wait_until_finished(task_id)
        log.info("Task %s cancelled (%s)", task_id, state["status"])
        resp.media = shape(CancelResponse, {"message": f"Task {task_id} cancelled", "status": state["status"]})

    def _wait_until_finished(self, task_id: str) -> dict:
        """A running task stops at its next probe (every 0.1 s); waiting a
        moment lets the answer say it has stopped rather than that it will."""
        deadline = time.monotonic() + self.settings.cancel_wait_s
        state = self.store.get(task_id)
        while state["status"] not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.05)
            state = self.store.get(task_id)
        return state


class TaskResultResource:
    """GET /tasks/{task_id}/result."""

    def __init__(self, system):
        self.store = system.store

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        resp.media = shape(TaskResult, self.store.result(task_id))
