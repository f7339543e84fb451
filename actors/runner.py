"""Run one stored task: the body of the `run_task` actor.

The runner moves the task to `running`, drives the engine with a sink that
appends each event to the task's log and a probe that reads the task's cancel
flag, and records how it ended. Whatever happens, the task does not stay
`running`: a crash, a full disk or a worker shutting down all end it.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from storage import FINISHED, InvalidTransition, StorageError, TaskNotFound, TaskStore

from .engines import EngineFactory

log = logging.getLogger("aipy.runner")

INTERRUPTED_BY_SHUTDOWN = "interrupted: the server stopped while this task ran"
INTERRUPTED_WORKER_DIED = "interrupted: the worker running this task stopped before it finished"


class TaskRunner:
    def __init__(self, store: TaskStore, engines: EngineFactory, on_finished: Callable[[str], None] = lambda task_id: None):
        self.store = store
        self.engines = engines
        #: Called with the id of every task this runner ends (callbacks hang here).
        self.on_finished = on_finished
        #: Set when the process shuts down: running tasks stop at their next
        #: probe and end as errors, instead of holding up the exit.
        self.stopping = threading.Event()

    def run(self, task_id: str) -> None:
        try:
            self._run(task_id)
        finally:
            self._notify_if_finished(task_id)

    def _notify_if_finished(self, task_id: str) -> None:
        try:
            finished = self.store.get(task_id)["status"] in FINISHED
        except StorageError:
            return
        if finished:
            self.on_finished(task_id)

    def _run(self, task_id: str) -> None:
        try:
            state = self.store.get(task_id)
        except TaskNotFound:
            log.warning("Task %s vanished before it ran (deleted)", task_id)
            return
        if state["status"] == "running":
            # The message came back after the worker that took it died.
            log.warning("Task %s was running on a worker that stopped", task_id)
            self.store.end_task(task_id, "error", error=INTERRUPTED_WORKER_DIED)
            return
        if state["status"] != "pending":
            log.info("Task %s is %s: nothing to run", task_id, state["status"])
            return
        try:
            engine = self.engines.build(state.get("options") or {})
        except (KeyError, ValueError) as exc:
            log.error("Task %s cannot start: %s", task_id, exc)
            self.store.end_task(task_id, "error", error=str(exc.args[0] if exc.args else exc))
            return
        context = {"llm": engine.provider.settings.name, "model": engine.provider.model}
        try:
            self.store.transition(task_id, "running", context=context)
        except InvalidTransition:
            log.info("Task %s was cancelled before it started", task_id)
            return
        log.info("Task %s started", task_id)
        self._drive(task_id, state["instruction"], engine)

    def _drive(self, task_id: str, instruction: str, engine) -> None:
        def emit(kind: str, content: dict) -> None:
            self.store.append_event(task_id, kind, content)

        def probe() -> bool | str:
            if self.stopping.is_set():
                return INTERRUPTED_BY_SHUTDOWN
            return self.store.is_cancel_requested(task_id)

        try:
            outcome = engine.run(instruction, self.store.workspace(task_id), emit, cancelled=probe, task_id=task_id)
        except Exception as exc:  # the sink failed (disk full...): end the task anyway
            log.exception("Task %s failed outside the engine", task_id)
            self._end_quietly(task_id, f"internal error: {type(exc).__name__}: {exc}")
            return
        try:
            self.store.transition(task_id, outcome.status, error=outcome.error)
        except (InvalidTransition, StorageError) as exc:
            log.error("Task %s could not record its end (%s): %s", task_id, outcome.status, exc)
            return
        if outcome.status == "completed":
            log.info("Task %s completed", task_id)
        else:
            log.info("Task %s ended %s: %s", task_id, outcome.status, outcome.error or "")

    def _end_quietly(self, task_id: str, error: str) -> None:
        try:
            self.store.end_task(task_id, "error", error=error)
        except StorageError:
            log.exception("Task %s could not be marked as failed", task_id)
