"""The task service: each use case of the API as one method, free of HTTP.

A resource parses a request, calls one method here and shapes the answer;
what a use case does to the store, the idempotency keys and the queue (and
in which order, so that a failure leaves nothing behind) is written once,
here. Failures are raised as the exceptions below (and storage's own), which
`app/errors.py` turns into statuses.

The service is given narrow collaborators, not the whole task system: the
store, the keys, a `TaskQueue` (send a task, note that one finished), the
cleanup, the callback-target check and the wait budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, TypeVar

from storage import (FINISHED, IdempotencyKeys, InvalidTransition, StorageError, StorageFull, TaskNotFound,
                     TaskStore, UploadConflict)

from .artifacts import Artifact, ArtifactNotFound, list_artifacts, open_artifact
from .waiting import WaitBudget, wait_until_finished

log = logging.getLogger("aipy.tasks")
T = TypeVar("T")


class TaskQueue(Protocol):
    """Where stored tasks go to run (the Dramatiq pipeline)."""

    def submit(self, task_id: str) -> None:
        """Queue the task; raises `QueueUnavailable`-like errors (see `unavailable`)."""

    def task_finished(self, task_id: str) -> None:
        """Note that a task ended outside a worker (queues its callback)."""


class InvalidRequest(Exception):
    """The request cannot be done as asked (a 400); the text says why."""


class NotStored(Exception):
    """A new task could not be stored or queued, and nothing was kept; the
    text is the whole detail. `full`: the disk is full (a 507, not a 503)."""

    def __init__(self, detail: str, *, full: bool = False):
        super().__init__(detail)
        self.full = full


class PreviousTaskMissing(LookupError):
    """A follow-up names a task that does not exist (a 404)."""


class PreviousTaskUnfinished(Exception):
    """A follow-up names a task that has not finished (a 409)."""


@dataclass(frozen=True)
class Upload:
    """A file handed in with a task: its path in the workspace (checked by
    app/uploads.py) and its bytes."""

    path: str
    data: bytes


class FileNotInWorkspace(LookupError):
    """The task has no such file (or the path leaves its workspace)."""


@dataclass(frozen=True)
class SubmitRules:
    """What a submission must satisfy beyond its model (settings)."""

    max_instruction_chars: int
    providers: tuple[str, ...]
    check_callback_url: Callable[[str], str | None]  # why not, or None


@dataclass(frozen=True)
class Submitted:
    """What submit did: a new task (or the first one holding the key), and
    its result when the caller waited and it finished."""

    task_id: str
    status: str
    repeated: bool = False
    result: dict | None = None


class TaskService:
    def __init__(self, store: TaskStore, keys: IdempotencyKeys, queue: TaskQueue, rules: SubmitRules,
                 budget: WaitBudget, *, cleanup: Callable[[float], int], unavailable: tuple[type[Exception], ...],
                 cancel_wait_s: float = 2.0, on_submitted: Callable[[], None] = lambda: None):
        self.store = store
        self.keys = keys
        self.queue = queue
        self.rules = rules
        self.budget = budget
        self._cleanup = cleanup
        self.unavailable = unavailable  # what queue.submit raises when the queue cannot take messages
        self.cancel_wait_s = cancel_wait_s
        self.on_submitted = on_submitted  # told of each new task queued (the metrics); must not raise

    # -- submit ----------------------------------------------------------

    def submit(self, instruction: str, metadata: dict, options: dict, *, callback_url: str | None = None,
               key: str | None = None, wait_s: float = 0.0, previous_task_id: str | None = None,
               uploads: Sequence[Upload] = ()) -> Submitted:
        """Store a new task and queue it, all or nothing. With `key`, a
        repeated submission returns the first task holding it. With
        `previous_task_id`, the task continues that finished task (its
        conversation and a copy of its files). `uploads` are saved in its
        workspace before it can start. With `wait_s`, wait up to that long
        for the task to finish."""
        self._check(instruction, options, callback_url)
        previous = self._previous(previous_task_id) if previous_task_id is not None else None
        extra = {}
        if callback_url:
            extra["callback_url"] = callback_url
        if previous is not None:
            extra["previous_task_id"] = previous
        if uploads:
            extra["files"] = [{"path": upload.path, "size": len(upload.data)} for upload in uploads]
        try:
            task_id, first = self._store(instruction, metadata, options, extra or None, key,
                                         previous=previous, uploads=uploads)
        except UploadConflict as exc:  # a name the copied files already use otherwise
            raise InvalidRequest(f"{exc}; nothing was stored") from exc
        except StorageError as exc:
            log.error("Task not stored: %s", exc)
            if isinstance(exc, StorageFull):  # 507: trying again helps only once space is freed
                raise NotStored(f"insufficient storage: {exc}; nothing was stored", full=True) from exc
            raise NotStored(f"storage unavailable: {exc}; nothing was stored") from exc
        if first is not None:
            return Submitted(first["task_id"], first["status"], repeated=True)
        try:
            self.queue.submit(task_id)
        except self.unavailable as exc:
            # The caller gets no task id, so neither the task nor its key may linger.
            self.store.delete(task_id)
            if key is not None:
                self.keys.release(key, task_id)
            log.error("Task %s not queued: %s", task_id, exc)
            raise NotStored(f"{exc}; nothing was stored, try again later") from exc
        log.info("Task submitted: %s", task_id)
        self.on_submitted()
        if wait_s > 0 and wait_until_finished(self.store, task_id, wait_s, self.budget)["status"] in FINISHED:
            return Submitted(task_id, "finished", result=self.store.result(task_id))
        return Submitted(task_id, "pending")

    def _check(self, instruction: str, options: dict, callback_url: str | None) -> None:
        limit = self.rules.max_instruction_chars
        if len(instruction) > limit:
            raise InvalidRequest(f"instruction: {len(instruction)} characters; the limit is {limit} (max_instruction_chars)")
        if not instruction.strip():
            raise InvalidRequest("instruction: must not be blank")
        llm = options.get("llm")
        if llm is not None and llm not in self.rules.providers:
            known = ", ".join(sorted(self.rules.providers))
            raise InvalidRequest(f"llm: unknown provider {llm!r}; configured: {known}")
        if callback_url is not None:
            problem = self.rules.check_callback_url(callback_url)
            if problem:
                raise InvalidRequest(problem)

    def _store(self, instruction: str, metadata: dict, options: dict, extra: dict | None,
               key: str | None, *, previous: str | None, uploads: Sequence[Upload]) -> tuple[str, dict | None]:
        """Store the new task, fill its workspace and give it `key`: (its id,
        None), or (its id, the first task holding the key, the new one being
        gone again). A StorageError leaves no task and no key behind."""
        task_id = self.store.create(instruction, metadata, options, extra=extra)["task_id"]
        try:
            if previous is not None:
                self.store.copy_workspace(previous, task_id)
            if uploads:
                self.store.put_files(task_id, [(upload.path, upload.data) for upload in uploads])
            if key is None:
                return task_id, None
            return task_id, self._first_with_key(key, task_id)
        except StorageError:
            try:
                self.store.delete(task_id)  # no key, no queue: the task must not linger
            except StorageError as exc:
                log.error("Task %s was not removed after its submit failed: %s", task_id, exc)
            raise

    def _previous(self, task_id: str) -> str:
        """The id of the finished task a follow-up continues; PreviousTaskMissing
        (404) or PreviousTaskUnfinished (409) when it cannot be continued."""
        try:
            state = self.store.get(task_id)
        except TaskNotFound:
            raise PreviousTaskMissing(f"previous_task_id: Task {task_id} not found") from None
        if state["status"] not in FINISHED:
            raise PreviousTaskUnfinished(f"previous_task_id: Task {state['task_id']} is {state['status']}; "
                                         "a follow-up can continue only a finished task (wait for it, or cancel it)")
        return state["task_id"]

    def _first_with_key(self, key: str, task_id: str) -> dict | None:
        """The live task that holds `key` (this new one then goes), or None
        when the key is now this task's."""
        holder = self.keys.claim(key, task_id)
        if holder is None:
            return None
        try:
            first = self.store.get(holder)
        except TaskNotFound:  # its task was cleaned up: the key is free again
            self.keys.reassign(key, task_id)
            return None
        self.store.delete(task_id)
        log.info("Task %s returned again for a repeated Idempotency-Key", holder)
        return first

    # -- read --------------------------------------------------------------

    def status_view(self, task_id: str, render: Callable[[dict], T], wait_s: float = 0.0) -> T:
        """`render(state)` of the task's state, once finished or after
        `wait_s` seconds; rendered once per version of the state, so reading
        an unchanged task again renders nothing (see TaskStore.get_view)."""
        if wait_s > 0:
            wait_until_finished(self.store, task_id, wait_s, self.budget)
        return self.store.get_view(task_id, render)

    def result(self, task_id: str, wait_s: float = 0.0) -> dict:
        """The task's result (state and every event), once finished or after `wait_s`."""
        wait_until_finished(self.store, task_id, wait_s, self.budget)
        return self.store.result(task_id)

    def list(self, status: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
        """One page of task summaries, newest first, and how many match."""
        return self.store.list(status=status, limit=limit, offset=offset)

    # -- cancel ------------------------------------------------------------

    def cancel(self, task_id: str) -> dict:
        """Cancel a pending or running task; its state after the cancel."""
        try:
            state = self.store.request_cancel(task_id)
        except InvalidTransition as exc:
            raise InvalidRequest(f"Task {task_id} is already {exc.current} and cannot be cancelled") from None
        if state["status"] == "running":
            # It stops at its next probe (every 0.1 s): waiting a moment lets
            # the answer say it has stopped rather than that it will.
            state = wait_until_finished(self.store, task_id, self.cancel_wait_s, self.budget)
        else:
            self.queue.task_finished(task_id)  # a pending task ends right here
        log.info("Task %s cancelled (%s)", task_id, state["status"])
        return state

    # -- files ---------------------------------------------------------------

    def files(self, task_id: str, limit: int) -> tuple[str, list[dict], bool]:
        """(task id as stored, the workspace's files, whether the list was cut at `limit`)."""
        listed, truncated = list_artifacts(self.store.workspace(task_id), limit)
        return self.store.get(task_id)["task_id"], listed, truncated

    def open_file(self, task_id: str, path: str) -> Artifact:
        """One file of the task's workspace, opened for streaming."""
        try:
            return open_artifact(self.store.workspace(task_id), path)
        except ArtifactNotFound as exc:
            raise FileNotInWorkspace(f"Task {task_id} has no file {path!r}: {exc}") from None

    # -- maintenance ---------------------------------------------------------

    def cleanup(self, max_age_hours: float) -> int:
        """Remove finished tasks older than `max_age_hours`; how many went."""
        return self._cleanup(max_age_hours)
