"""Run one stored task: the body of the `run_task` actor.

The runner moves the task to `running`, drives the engine with a sink that
appends each event to the task's log and a probe that reads the task's cancel
flag, and records how it ended. Whatever happens, the task does not stay
`running`: a crash, a full disk or a worker shutting down all end it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from storage import FINISHED, InvalidTransition, StorageError, TaskNotFound, TaskStore

from .engines import EngineFactory

log = logging.getLogger("aipy.runner")

INTERRUPTED_BY_SHUTDOWN = "interrupted: the server stopped while this task ran"
#: Pauses between tries at recording a task's end when storage fails.
RECORD_RETRY_PAUSES_S = (0.2, 0.5, 1.0, 2.0)

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
        if state["status"] == "running":
            # The message came back after the worker that took it died.
            log.warning("Task %s was running on a worker that stopped", task_id)
            return self._end(task_id, INTERRUPTED_WORKER_DIED)
        if state["status"] != "pending":
            log.info("Task %s is %s: nothing to run", task_id, state["status"])
            return False
        try:
            engine = self.engines.build(state.get("options") or {})
        except (KeyError, ValueError) as exc:
            log.error("Task %s cannot start: %s", task_id, exc)
            return self._end(task_id, str(exc.args[0] if exc.args else exc))
        context = {"llm": engine.provider.settings.name, "model": engine.provider.model}
        try:
            self.store.transition(task_id, "running", context=context)
        except InvalidTransition:
            log.info("Task %s was cancelled before it started", task_id)
            return False
        except StorageError as exc:
            log.error("Task %s could not start: %s", task_id, exc)
            return self._end(task_id, f"could not start: {exc}")
        log.info("Task %s started", task_id)
        self._drive(task_id, state["instruction"], engine)
        return True

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
            self._end(task_id, f"internal error: {type(exc).__name__}: {exc}")
            return
        if not self._record_end(task_id, outcome.status, outcome.error):
            self._end(task_id, f"could not record the task's end ({outcome.status}): storage failed")
            return
        if outcome.status == "completed":
            log.info("Task %s completed", task_id)
        else:
            log.info("Task %s ended %s: %s", task_id, outcome.status, outcome.error or "")

    def _record_end(self, task_id: str, status: str, error: str | None) -> bool:
        """Move the task to its final status, trying again over a few seconds
        when storage fails for a moment (a full disk being cleared)."""
        for pause in RECORD_RETRY_PAUSES_S:
            try:
                self.store.transition(task_id, status, error=error)
                return True
            except InvalidTransition as exc:
                return exc.current in FINISHED  # someone else ended it already
            except StorageError as exc:
                log.warning("Task %s: recording its end failed, trying again: %s", task_id, exc)
                time.sleep(pause)
        return False

    def _end(self, task_id: str, error: str) -> bool:
        """End the task as an error by any means left; True when it ended."""
        try:
            self.store.end_task(task_id, "error", error=error)
            return True
        except StorageError:
            log.exception("Task %s could not be marked as failed", task_id)
            return False
