"""The task endpoints: submit, list, status, result and cancel. Each parses
the request, calls one `TaskService` method and shapes the answer."""

from __future__ import annotations

import falcon

from storage import STATUSES

from ..models import CancelResponse, TaskList, TaskResult, TaskSubmission, shape, status_body
from ..origin import is_multipart
from ..requests import RequestLimits, idempotency_key, int_param, json_body, wait_param
from ..service import TaskService
from ..uploads import json_uploads, read_multipart

SUBMITTED = "Task submitted successfully"
REPEATED = "Task already submitted with this Idempotency-Key"


class TaskCollection:
    """POST /tasks (optionally waiting) and GET /tasks."""

    def __init__(self, service: TaskService, limits: RequestLimits):
        self.service = service
        self.limits = limits

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if is_multipart(req.content_type):
            body, uploads = read_multipart(req, self.limits)
        else:
            body = json_body(req, TaskSubmission, self.limits.max_body_bytes)
            uploads = json_uploads(body, self.limits)
        key = idempotency_key(req)
        wait = wait_param(req, self.limits.max_wait_s)
        done = self.service.submit(body.instruction, body.metadata, body.options(),
                                   callback_url=body.callback_url, key=key, wait_s=wait,
                                   previous_task_id=body.previous_task_id, uploads=uploads)
        if done.result is not None:
            resp.media = shape(TaskResult, done.result)
            return
        message = REPEATED if done.repeated else SUBMITTED
        # Built here, so no model re-checks it (the same fields as SubmitResponse).
        resp.media = {"task_id": done.task_id, "status": done.status, "message": message}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise falcon.HTTPBadRequest(description=f"query parameter status must be one of {', '.join(STATUSES)}; got {status!r}")
        limit = int_param(req, "limit", self.limits.list_default_limit, low=1, high=self.limits.list_max_limit)
        offset = int_param(req, "offset", 0, low=0, high=10**9)
        page, total = self.service.list(status, limit, offset)
        resp.media = shape(TaskList, {
            "tasks": {task["task_id"]: task for task in page},
            "total": total, "limit": limit, "offset": offset,
        })


class TaskItem:
    """GET /tasks/{task_id} (optionally waiting) and DELETE (cancel)."""

    def __init__(self, service: TaskService, limits: RequestLimits):
        self.service = service
        self.limits = limits

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        # Status reads are the API's most frequent request: the body comes
        # ready-made from the store's cache while the task is unchanged.
        resp.data = self.service.status_view(task_id, status_body, wait_param(req, self.limits.max_wait_s))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        state = self.service.cancel(task_id)
        resp.media = shape(CancelResponse, {"message": f"Task {task_id} cancelled", "status": state["status"]})


class TaskResultResource:
    """GET /tasks/{task_id}/result (optionally waiting)."""

    def __init__(self, service: TaskService, limits: RequestLimits):
        self.service = service
        self.limits = limits

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        result = self.service.result(task_id, wait_param(req, self.limits.max_wait_s))
        resp.media = shape(TaskResult, result)
