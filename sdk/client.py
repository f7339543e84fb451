"""`AgentClient`: the synchronous client of the Agent Mode API."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import httpx
from httpx_sse import EventSource, SSEError

from . import _common as common
from .errors import error_for
from .types import Cancellation, Event, FileInfo, Submission, Task, TaskPage, TaskResult


class AgentClient:
    """A client of one Agent Mode server.

    `base_url` is the server (default http://127.0.0.1:8848); `token` is sent
    as `Authorization: Bearer <token>` when given; `timeout` (seconds, or an
    `httpx.Timeout`; default 30) bounds each request, and requests that wait
    on the server get that much on top of their wait. `transport` is handed to
    `httpx.Client` (for tests, proxies or custom TLS).

    Use it as a context manager, or call `close()` when done::

        with AgentClient(token="...") as client:
            result = client.run_task("print the first 10 primes", timeout=300)
            print(result.status, result.answer)
    """

    def __init__(self, base_url: str = common.DEFAULT_URL, *, token: str | None = None,
                 timeout: float | httpx.Timeout | None = 30.0, transport: httpx.BaseTransport | None = None):
        self._client = httpx.Client(transport=transport, **common.client_options(base_url, token, timeout))

    @property
    def base_url(self) -> str:
        return str(self._client.base_url).rstrip("/")

    def __enter__(self) -> "AgentClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, *, wait: float | None = None, **kwargs: Any) -> Any:
        if wait is not None:
            kwargs.setdefault("params", {})["wait"] = common.seconds(wait)
            kwargs["timeout"] = common.with_read(self._client.timeout, wait)
        with common.transport_errors(self._client.base_url):
            response = self._client.request(method, path, **kwargs)
        return common.read_json(response)

    # -- tasks -----------------------------------------------------------

    def submit_task(self, instruction: str, metadata: dict[str, Any] | None = None, *, llm: str | None = None,
                    role: str | None = None, max_rounds: int | None = None, timeout_s: float | None = None,
                    callback_url: str | None = None, idempotency_key: str | None = None,
                    previous_task_id: str | None = None,
                    files: Mapping[str, common.FileSource] | None = None) -> Submission:
        """Submit a task; it runs in the background. With `idempotency_key`,
        submitting again with the same key returns the first task instead.
        `files` (path in the task's folder -> bytes, a file opened with
        "rb", or a local file's name) are saved there before it starts."""
        options = dict(llm=llm, role=role, max_rounds=max_rounds, timeout_s=timeout_s, callback_url=callback_url,
                       previous_task_id=previous_task_id)
        body, headers = common.submission(instruction, metadata, options, idempotency_key)
        return Submission.from_json(self._request("POST", "/tasks", headers=headers,
                                                  **common.task_content(body, files)))

    def follow_up(self, task_id: str, instruction: str, metadata: dict[str, Any] | None = None,
                  **options: Any) -> Submission:
        """Submit a task that continues the finished task `task_id`: it
        starts with that task's conversation and a copy of its files.
        `options` are those of `submit_task`."""
        return self.submit_task(instruction, metadata, previous_task_id=task_id, **options)

    def get_task(self, task_id: str) -> Task:
        return Task.from_json(self._request("GET", common.task_path(task_id)))

    def get_result(self, task_id: str) -> TaskResult:
        """The task's status and everything it did so far (`output`)."""
        return TaskResult.from_json(self._request("GET", common.task_path(task_id, "result")))

    def list_tasks(self, status: str | None = None, limit: int | None = None, offset: int | None = None) -> TaskPage:
        """One page of tasks, newest first (the server's default page size: 100)."""
        params = {k: v for k, v in {"status": status, "limit": limit, "offset": offset}.items() if v is not None}
        return TaskPage.from_json(self._request("GET", "/tasks", params=params))

    def cancel_task(self, task_id: str) -> Cancellation:
        """Cancel a pending or running task; `BadRequest` when it already finished."""
        return Cancellation.from_json(self._request("DELETE", common.task_path(task_id)), task_id)

    def wait_for_completion(self, task_id: str, timeout: float | None = None, *, wait_step: float = 60) -> TaskResult:
        """The task's result once it finished, or `TaskTimeout` after `timeout`
        seconds (None: no limit). The server holds each request until the task
        ends or up to `wait_step` seconds (it caps that at its `max_wait_s`),
        so this asks a handful of times, not many."""
        deadline = common.Deadline(task_id, timeout)
        while True:
            step = deadline.step(wait_step)
            started = time.monotonic()
            result = TaskResult.from_json(self._request("GET", common.task_path(task_id, "result"), wait=step))
            if result.finished:
                return result
            if deadline.expired():
                raise deadline.timed_out(result.status)
            time.sleep(deadline.pause_after(step, time.monotonic() - started))

    def run_task(self, instruction: str, metadata: dict[str, Any] | None = None, *, llm: str | None = None,
                 role: str | None = None, max_rounds: int | None = None, timeout_s: float | None = None,
                 callback_url: str | None = None, idempotency_key: str | None = None,
                 timeout: float | None = None, wait_step: float = 60,
                 files: Mapping[str, common.FileSource] | None = None) -> TaskResult:
        """Submit a task and return its result once it finished; `TaskTimeout`
        after `timeout` seconds (the task keeps running on the server).
        `files` as for `submit_task`."""
        options = dict(llm=llm, role=role, max_rounds=max_rounds, timeout_s=timeout_s, callback_url=callback_url)
        body, headers = common.submission(instruction, metadata, options, idempotency_key)
        deadline = common.Deadline("", timeout)
        answer = self._request("POST", "/tasks", headers=headers, wait=deadline.step(wait_step),
                               **common.task_content(body, files))
        if "output" in answer:
            result = TaskResult.from_json(answer)
            if result.finished:
                return result
        task_id = str(answer["task_id"])
        return self.wait_for_completion(task_id, deadline.remaining(), wait_step=wait_step)

    # -- events ------------------------------------------------------------

    def stream_events(self, task_id: str, after: int = 0) -> Iterator[Event]:
        """The task's events in `seq` order, live, from the one after `after`
        until `task_end`. A dropped connection is resumed where it stopped
        (`Last-Event-ID`), so no event is lost or repeated."""
        state = common.StreamState(task_id, after, self._client.base_url)
        timeout = common.with_read(self._client.timeout, common.STREAM_READ_TIMEOUT, add=False)
        path = common.task_path(task_id, "events")
        while True:
            try:
                with self._client.stream("GET", path, headers=state.headers(), timeout=timeout) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise error_for(response)
                    state.connected = True
                    for sse in EventSource(response).iter_sse():
                        event = state.accept(sse)
                        if event is None:
                            continue
                        yield event
                        if event.type == "task_end":
                            return
            except SSEError as exc:  # a TransportError to httpx-sse, but no reconnect will mend it
                raise state.not_a_stream(exc) from exc
            except httpx.TransportError as exc:
                time.sleep(state.dropped(exc))
                continue
            if self.get_task(task_id).finished:  # it ended with no task_end to send
                return
            time.sleep(state.dropped(None))

    # -- files -------------------------------------------------------------

    def list_files(self, task_id: str) -> list[FileInfo]:
        """The files the task's code left in its workspace, sorted by path."""
        answer = self._request("GET", common.task_path(task_id, "files"))
        return [FileInfo.from_json(entry) for entry in answer.get("files", []) if isinstance(entry, dict)]

    def download_file(self, task_id: str, path: str) -> bytes:
        """A file of the task's workspace, whole; `path` as `list_files` gives it."""
        with common.transport_errors(self._client.base_url):
            response = self._client.get(common.file_path(task_id, path), headers={"Accept": "*/*"})
        if response.status_code >= 400:
            raise error_for(response)
        return response.content

    def download_file_to(self, task_id: str, path: str, dest: str | os.PathLike[str]) -> Path:
        """Stream a file to `dest` (a file name, or a directory to put it in)
        and return where it went. The file appears only once complete."""
        target = common.destination(dest, path)
        part = common.partial(target)
        try:
            with common.transport_errors(self._client.base_url):
                url = common.file_path(task_id, path)
                with self._client.stream("GET", url, headers={"Accept": "*/*"}) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise error_for(response)
                    with open(part, "wb") as out:
                        for chunk in response.iter_bytes():
                            out.write(chunk)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return target

    # -- service -----------------------------------------------------------

    def cleanup(self, max_age_hours: float | None = None) -> str:
        """Remove finished tasks older than `max_age_hours` (default: the
        server's, 24); returns the server's message ("Cleaned up N tasks")."""
        params = {} if max_age_hours is None else {"max_age_hours": max_age_hours}
        return str(self._request("POST", "/admin/cleanup", params=params).get("message", ""))

    def health(self) -> dict[str, Any]:
        """The server's health report. An unhealthy server (503) is reported,
        not raised: look at `["status"]`."""
        with common.transport_errors(self._client.base_url):
            response = self._client.get("/health")
        if response.status_code == 503:
            try:
                report = response.json()
            except ValueError:
                report = None
            if isinstance(report, dict) and "status" in report:
                return report
        return common.read_json(response)
