"""The task endpoints: submit, list, status, result and cancel."""

from __future__ import annotations

import logging

import falcon

from actors.system import BrokerUnavailable
from storage import FINISHED, STATUSES, InvalidTransition, StorageError, StorageFull, TaskNotFound

from ..models import CancelResponse, SubmitResponse, TaskList, TaskResult, TaskStatus, TaskSubmission, shape
from ..requests import int_param, json_body
from ..waiting import WaitBudget, wait_param, wait_until_finished

log = logging.getLogger("aipy.tasks")


#: The longest Idempotency-Key accepted.
MAX_KEY_LENGTH = 255


class TaskCollection:
    """POST /tasks and GET /tasks."""

    def __init__(self, system, budget: WaitBudget):
        self.system = system
        self.store = system.store
        self.settings = system.settings
        self.budget = budget

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        submission = json_body(req, TaskSubmission, self.settings.max_body_bytes)
        self._check(submission)
        key = idempotency_key(req)
        wait = wait_param(req, self.settings.max_wait_s)
        try:
            task_id, first = self._store(submission, key)
        except StorageFull as exc:
            # 507, not 503: trying again helps only once someone frees space.
            log.error("Task not stored: %s", exc)
            raise falcon.HTTPInsufficientStorage(description=f"insufficient storage: {exc}; nothing was stored") from None
        except StorageError as exc:
            log.error("Task not stored: %s", exc)
            raise falcon.HTTPServiceUnavailable(description=f"storage unavailable: {exc}; nothing was stored") from None
        if first is not None:
            resp.media = shape(SubmitResponse, {
                "task_id": first["task_id"], "status": first["status"],
                "message": "Task already submitted with this Idempotency-Key",
            })
            return
        try:
            self.system.submit(task_id)
        except BrokerUnavailable as exc:
            # The caller gets no task id, so neither the task nor its key may linger.
            self.store.delete(task_id)
            if key is not None:
                self.system.keys.release(key, task_id)
            log.error("Task %s not queued: %s", task_id, exc)
            raise falcon.HTTPServiceUnavailable(description=f"{exc}; nothing was stored, try again later") from None
        log.info("Task submitted: %s", task_id)
        if wait > 0 and wait_until_finished(self.store, task_id, wait, self.budget)["status"] in FINISHED:
            resp.media = shape(TaskResult, self.store.result(task_id))
            return
        resp.media = shape(SubmitResponse, {"task_id": task_id, "status": "pending", "message": "Task submitted successfully"})

    def _store(self, submission: TaskSubmission, key: str | None) -> tuple[str, dict | None]:
        """Store the new task and give it `key`: (its id, None), or (its id,
        the first task holding the key, the new one being gone again). All
        or nothing: a StorageError leaves no task and no key behind."""
        extra = {"callback_url": submission.callback_url} if submission.callback_url else None
        task_id = self.store.create(submission.instruction, submission.metadata, submission.options(), extra=extra)["task_id"]
        if key is None:
            return task_id, None
        try:
            return task_id, self._first_with_key(key, task_id)
        except StorageError:
            try:
                self.store.delete(task_id)  # no key, no queue: the task must not linger
            except StorageError as exc:
                log.error("Task %s was not removed after its submit failed: %s", task_id, exc)
            raise

    def _first_with_key(self, key: str, task_id: str) -> dict | None:
        """The live task that holds `key` (this new one then goes), or None
        when the key is now this task's."""
        holder = self.system.keys.claim(key, task_id)
        if holder is None:
            return None
        try:
            first = self.store.get(holder)
        except TaskNotFound:  # its task was cleaned up: the key is free again
            self.system.keys.reassign(key, task_id)
            return None
        self.store.delete(task_id)
        log.info("Task %s returned again for a repeated Idempotency-Key", holder)
        return first

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
        if submission.callback_url is not None:
            problem = self.system.check_callback_url(submission.callback_url)
            if problem:
                raise falcon.HTTPBadRequest(description=problem)

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
    """GET /tasks/{task_id} (optionally waiting) and DELETE (cancel)."""

    def __init__(self, system, budget: WaitBudget):
        self.system = system
        self.store = system.store
        self.settings = system.settings
        self.budget = budget

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        wait = wait_param(req, self.settings.max_wait_s)
        resp.media = shape(TaskStatus, wait_until_finished(self.store, task_id, wait, self.budget))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        try:
            state = self.store.request_cancel(task_id)
        except InvalidTransition as exc:
            raise falcon.HTTPBadRequest(
                description=f"Task {task_id} is already {exc.current} and cannot be cancelled"
            ) from None
        if state["status"] == "running":
            # It stops at its next probe (every 0.1 s): waiting a moment lets
            # the answer say it has stopped rather than that it will.
            state = wait_until_finished(self.store, task_id, self.settings.cancel_wait_s, self.budget)
        else:
            self.system.task_finished(task_id)  # a pending task ends right here
        log.info("Task %s cancelled (%s)", task_id, state["status"])
        resp.media = shape(CancelResponse, {"message": f"Task {task_id} cancelled", "status": state["status"]})


class TaskResultResource:
    """GET /tasks/{task_id}/result (optionally waiting)."""

    def __init__(self, system, budget: WaitBudget):
        self.store = system.store
        self.settings = system.settings
        self.budget = budget

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        wait_until_finished(self.store, task_id, wait_param(req, self.settings.max_wait_s), self.budget)
        resp.media = shape(TaskResult, self.store.result(task_id))


def idempotency_key(req: falcon.Request) -> str | None:
    key = req.get_header("Idempotency-Key")
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise falcon.HTTPBadRequest(
            description=f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return key
