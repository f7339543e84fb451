"""Run one stored task: the body of the `run_task` actor.

The runner moves the task to `running`, drives the engine with a sink that
appends each event to the task's log and a probe that reads the task's cancel
flag, and records how it ended. Whatever happens, the task does not stay
`running`: a crash, a full disk or a worker shutting down all end it.

A full disk (or a read-only data folder) stops a task at the first event its
log cannot take, as the log must not go on with a hole; the task then ends
as an error that says why. That end (or the engine's own, when only its
task_end did not fit) is recorded as soon as storage takes it: the worker
tries for a moment, then hands it to `PendingEnds`, one background thread
that tries again with backoff, so the worker is free for other tasks and
nothing waits for a restart. The store makes the retries safe: the log's
task_end is the commit point, never written twice (storage/changes.py).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import tenacity
from dramatiq.middleware import CurrentMessage
from storage import (
    DamagedTask, InvalidTransition, StorageError, StorageFull, StorageReadOnly, TaskNotFound, TaskStore, end_content,
)

from .engines import EngineFactory
from .followup import history_for
from .metrics import TaskMetrics
from .pending_ends import EndRetry, Handover, PendingEnds, try_end

log = logging.getLogger("aipy.runner")

INTERRUPTED_BY_SHUTDOWN = "interrupted: the server stopped while this task ran"
#: The error of a task stopped because its log could not be written.
LOG_FULL = ("no space left on the device holding the data folder: the task's log could not be written, "
            "so the task was stopped; free space there and submit it again")
LOG_READ_ONLY = ("the data folder cannot be written (read-only or permissions): the task's log could not be "
                 "written, so the task was stopped; make it writable and submit the task again")

INTERRUPTED_WORKER_DIED = "interrupted: the worker running this task stopped before it finished"


def current_message_id() -> str | None:
    """The id of the Dramatiq message this worker thread is running (the
    broker's CurrentMessage middleware keeps it), or None outside one. A
    redelivered message keeps its id; a message sent again gets a new one."""
    message = CurrentMessage.get_current_message()
    return message.message_id if message is not None else None


class TaskRunner:
    def __init__(self, store: TaskStore, engines: EngineFactory, on_finished: Callable[[str], None] = lambda task_id: None,
                 *, metrics: TaskMetrics | None = None):
        self.store = store
        self.engines = engines
        #: Counts each task's queue wait and its engine's events (LLM calls, code blocks).
        self.metrics = metrics or TaskMetrics()
        #: Called with the id of every task this runner ends (callbacks hang here).
        self.on_finished = on_finished
        #: Set when the process shuts down: running tasks stop at their next
        #: probe and end as errors, instead of holding up the exit.
        self.stopping = threading.Event()

    def run(self, task_id: str) -> None:
        """Run the task if it is pending. Whoever ends a task tells
        `on_finished`, once: here only the tasks this call ended."""
        if self._run(task_id):
            self.on_finished(task_id)

    def _run(self, task_id: str) -> bool:
        """True when this call ended the task."""
        try:
            state = self.store.get(task_id)
        except TaskNotFound:
            log.warning("Task %s vanished before it ran (deleted)", task_id)
            return False
        message_id = current_message_id()
        if state["status"] == "running":
            return self._running_again(task_id, state, message_id)
        if state["status"] != "pending":
            log.info("Task %s is %s: nothing to run", task_id, state["status"])
            return False
        try:
            engine = self.engines.build(state.get("options") or {})
        except (KeyError, ValueError) as exc:
            log.error("Task %s cannot start: %s", task_id, exc)
            return self._end(task_id, str(exc.args[0] if exc.args else exc))
        context = {"llm": engine.provider.settings.name, "model": engine.provider.model}
        if message_id is not None:
            context["message_id"] = message_id  # so a duplicate can be told from a redelivery
        try:
            started = self.store.transition(task_id, "running", context=context)
        except InvalidTransition as exc:
            # The lock-guarded transition lets one message start a task: a
            # duplicate that read `pending` at the same moment stops here.
            if exc.current == "running":
                log.warning("Task %s was started by another message meanwhile: message %s ignored",
                            task_id, message_id)
            else:
                log.info("Task %s was %s before it started", task_id, exc.current)
            return False
        except StorageError as exc:
            log.error("Task %s could not start: %s", task_id, exc)
            return self._end(task_id, f"could not start: {exc}")
        log.info("Task %s started", task_id)
        self.metrics.task_started(started)
        return self._drive(task_id, state, engine)

    def _running_again(self, task_id: str, state: dict, message_id: str | None) -> bool:
        """A message for a task that is running: the one that started it,
        back because the worker running it died (end the task: its run is
        lost), or a duplicate (a re-send that raced a message that was not
        really lost, see reconciler.py), which must not touch a healthy
        task. When either id is unknown (a task started before message ids
        were recorded, a call from outside a worker) it counts as the
        redelivery it used to be. True when this call ended the task."""
        started_by = (state.get("context") or {}).get("message_id")
        if started_by is not None and message_id is not None and started_by != message_id:
            log.warning("Task %s is running (started by message %s): duplicate message %s ignored",
                        task_id, started_by, message_id)
            return False
        log.warning("Task %s was running on a worker that stopped", task_id)
        return self._end(task_id, INTERRUPTED_WORKER_DIED)

    def _drive(self, task_id: str, state: dict, engine) -> bool:
        """Run the engine and record how the task ended. True when the end
        is recorded now; False when storage refused it (`PendingEnds`
        records it later and tells `on_finished`) or someone else ended it."""
        provider = engine.provider.settings.name
        sink = LogSink(self.store, task_id,
                       observe=lambda kind, content: self.metrics.engine_event(provider, kind, content))

        def probe() -> bool | str:
            if self.stopping.is_set():
                return INTERRUPTED_BY_SHUTDOWN
            return self.store.is_cancel_requested(task_id)

        try:
            settings = engine.settings
            history = history_for(self.store, state, settings.followup_context_chars, settings.lang)
            outcome = engine.run(state["instruction"], self.store.workspace(task_id), sink.emit, cancelled=probe,
                                 task_id=task_id, history=history, given_files=state.get("files") or ())
        except Exception as exc:
            if sink.failure is not None:
                log.error("Task %s stopped: its log could not be written: %s", task_id, sink.failure)
                return self._end(task_id, log_failure(sink.failure))
            log.exception("Task %s failed outside the engine", task_id)
            return self._end(task_id, f"internal error: {type(exc).__name__}: {exc}")
        if sink.failure is not None:  # the engine swallowed the failure: its log has a hole
            return self._end(task_id, log_failure(sink.failure))
        ended = self._record_end(task_id, sink.end or outcome.to_dict())
        if outcome.status == "completed":
            log.info("Task %s completed", task_id)
        else:
            log.info("Task %s ended %s: %s", task_id, outcome.status, outcome.error or "")
        return ended

    def _record_end(self, task_id: str, end: dict, error: str | None = None) -> bool:
        """Record the task's end (`end` is its task_end content, `error` an
        error event to log before it), trying again for `end_retry_inline_s`
        while storage refuses, then handing it to `PendingEnds`. True when
        this call ended the task.

        The pause between tries starts at `end_retry_backoff_s` and doubles
        up to `end_retry_max_backoff_s`; a stopping process cuts it short
        and hands the end over at once. When `PendingEnds` holds
        `end_retry_max_tasks` ends already, this worker keeps trying itself:
        it takes no new task meanwhile, so the queued ones wait as `pending`
        and run once space is back."""
        pending = self.pending_ends()
        expect = self._status(task_id)
        handover = Handover(pending, self.stopping, task_id, end, error, expect)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda ended: not isinstance(ended, bool)),  # a refusal
            wait=tenacity.wait_exponential(multiplier=pending.policy.backoff_s, max=pending.policy.max_backoff_s),
            stop=handover,
            sleep=tenacity.sleep_using_event(self.stopping),
            retry_error_callback=lambda state: False,  # handed over, or given up as the process stops
        )
        return retrying(try_end, self.store, task_id, end, error, expect)

    def _status(self, task_id: str) -> str | None:
        """The task's status now: the end decided for it holds only while it
        keeps it (a task that could not start may be started by another
        worker once space is back). None when it cannot be read."""
        try:
            return self.store.get(task_id)["status"]
        except StorageError:
            return None

    def _end(self, task_id: str, error: str) -> bool:
        """End the task as an error, now or as soon as storage takes it (see
        `_record_end`); True when this call ended it now."""
        return self._record_end(task_id, end_content("error", error), error)

    #: Made on first use, from the service's settings (see `pending_ends`).
    _pending: PendingEnds | None = None
    _pending_lock = threading.Lock()

    def pending_ends(self) -> PendingEnds:
        """The ends this runner could not record yet, being retried."""
        with self._pending_lock:
            if self._pending is None:
                policy = EndRetry.from_settings(self.engines.config.settings)
                self._pending = PendingEnds(self.store, policy, lambda task_id: self.on_finished(task_id), self.stopping)
            return self._pending


def log_failure(exc: StorageError) -> str:
    """The error of a task stopped because its log refused an event."""
    if isinstance(exc, StorageFull):
        return LOG_FULL
    if isinstance(exc, StorageReadOnly):
        return LOG_READ_ONLY
    return f"the task's log could not be written, so the task was stopped: {exc}"


class LogSink:
    """The engine's event sink for one task. Each event is appended to the
    task's log but the task_end, which is held back and written with the
    final status in one step (`TaskStore.finish`). After the first event the
    log refused, every later one raises too: the engine unwinds (its code is
    killed on the way) instead of going on with a hole in its log.
    `observe(kind, content)` sees every event first, written or not (the
    metrics: an LLM call happened even when its log line could not be
    written); it must not raise."""

    def __init__(self, store: TaskStore, task_id: str,
                 observe: Callable[[str, dict], None] = lambda kind, content: None):
        self.store = store
        self.task_id = task_id
        self.observe = observe
        #: The storage failure that stopped the task, if any.
        self.failure: StorageError | None = None
        #: The engine's task_end content, once it gave one.
        self.end: dict | None = None

    def emit(self, kind: str, content: dict) -> None:
        self.observe(kind, content)
        if self.failure is not None:
            raise self.failure
        if kind == "task_end":
            self.end = content
            return
        try:
            self.store.append_event(self.task_id, kind, content)
        except (TaskNotFound, DamagedTask):
            raise  # the task was deleted or broken: no space to wait for
        except StorageError as exc:
            self.failure = exc
            raise
