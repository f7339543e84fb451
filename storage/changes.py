"""Every change of one task's status, made under the task's lock so that it
is checked against the current state, and so that the log and task.json
agree on how the task ended.

A task's end is two writes: the ``task_end`` event in ``events.jsonl``, then
the final status in ``task.json``. Either can fail on its own (a full disk
takes the second after the first fit into the log's last page; a process
can die between them), so one of them must lead:

- The **log leads**: ``task_end`` is written first and is the commit point.
  A state that is not finished while its log has a ``task_end`` is behind,
  and is brought in line (`settle`) the next time anyone changes the task
  under its lock: the runner trying its end again, recovery, a cancel, a
  start. The status and error are the log's; nothing is written twice.
- A finished state whose log has no ``task_end`` (written by a version or a
  tool that skipped it) gets one that says what the state says
  (`missing_end`), the next time its end is recorded.

`StatusChanges` is a mixin of `TaskStore` (store.py holds the files and
the lock; queries.py the questions about many tasks).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Callable, Iterator

from . import eventlog, files
from .errors import InvalidTransition
from .journal import record_of
from .states import ALLOWED, FINISHED, advance, end_content

log = logging.getLogger("aipy.storage")


class StatusChanges:
    """Transitions, cancels and ends for a `TaskStore`."""

    _folder: Callable[[object], tuple[str, Path]]
    _guard: Callable[[str, str], AbstractContextManager]
    _read: Callable[[str, Path], dict]
    _write: Callable[[Path, dict], None]
    _append: Callable[[Path, list[tuple[str, dict]]], None]
    _now: Callable[[], str]
    _journal: Callable[[list[dict]], None]

    @contextmanager
    def _locked_state(self, action: str, task_id: object) -> Iterator[tuple[str, Path, dict, bool]]:
        """Hold the task's lock and give its canonical id, folder, current
        state and whether that state was just settled: a state behind its
        log's task_end is first brought in line with it and saved (`settle`),
        so no change is ever made to a task whose end is already written."""
        canonical, folder = self._folder(task_id)
        settled = None
        try:
            with self._guard(action, canonical), files.task_lock(folder, canonical):
                state = self._read(canonical, folder)
                if settle(folder / "events.jsonl", state, self._now()):
                    self._write(folder, state)
                    settled = record_of(state)
                    log.warning("Task %s: task.json followed its log's task_end (%s)", canonical, state["status"])
                yield canonical, folder, state, settled is not None
        finally:
            if settled is not None:
                self._journal([settled])

    def transition(self, task_id: object, target: str, *, error: str | None = None,
                   context: dict | None = None) -> dict:
        """Move the task to `target`; InvalidTransition where the state
        machine forbids it. A finished status goes into the log first, as a
        task_end, unless the log ends the task already (its end then stands,
        see `settle`)."""
        with self._locked_state("change the status", task_id) as (canonical, folder, state, settled):
            if settled and state["status"] == target:
                return state  # the log had this very end already
            if target in FINISHED and target in ALLOWED.get(state["status"], ()):
                self._append(folder, [("task_end", end_content(target, error))])
            advance(state, target, self._now(), error=error, context=context)
            self._write(folder, state)
        self._journal([record_of(state)])
        return state

    def request_cancel(self, task_id: object) -> dict:
        """Cancel a pending task now; ask a running one to stop (its engine
        polls `is_cancel_requested`); a finished one raises InvalidTransition."""
        with self._locked_state("cancel", task_id) as (canonical, folder, state, settled):
            if settled and state["status"] == "cancelled":
                return state  # an earlier cancel wrote its task_end, not its state
            if state["status"] == "pending":
                self._append(folder, [("task_end", end_content("cancelled"))])
                advance(state, "cancelled", self._now())
            elif state["status"] == "running":
                if state.get("cancel_requested"):
                    return state
                state["cancel_requested"] = True
            else:
                raise InvalidTransition(canonical, state["status"], "cancelled")
            self._write(folder, state)
        if state["status"] == "cancelled":
            self._journal([record_of(state)])
        return state

    def finish(self, task_id: object, end: dict, *, error: str | None = None,
               expect: str | None = None) -> tuple[dict, bool]:
        """Record how a task ended: `end` is its task_end content (`status`
        the final status, `error` the state's error), preceded in the log by
        an `error` event when `error` is given (both in one write), then the
        state. Returns the state and whether this call ended the task.
        `expect` (default: any) is the status the task must still have: an
        end decided for a task that could not start must not end a run that
        another worker started since (InvalidTransition then).

        Safe to call again after it failed (a full disk): the log's task_end
        is the commit point, so once written, its status stands and nothing
        is written twice (`settle`). A finished task is returned as it is,
        with a task_end added to its log if it has none. Raises
        InvalidTransition where the state machine forbids the status (a
        pending task cannot complete); StorageFull while the disk is full."""
        status = end.get("status")
        if status not in FINISHED:
            raise ValueError(f"finish needs a finished status ({', '.join(sorted(FINISHED))}), not {status!r}")
        with self._locked_state("record the end", task_id) as (canonical, folder, state, settled):
            if state["status"] in FINISHED:
                missing = None if settled else missing_end(folder / "events.jsonl", state)
                if missing is not None:
                    self._append(folder, [("task_end", missing)])
                return state, settled
            if status not in ALLOWED.get(state["status"], ()) or expect not in (None, state["status"]):
                raise InvalidTransition(canonical, state["status"], status)
            self._append(folder, end_events(end, error))
            advance(state, status, self._now(), error=end.get("error") or error)
            self._write(folder, state)
        self._journal([record_of(state)])
        return state, True

    def end_task(self, task_id: object, status: str, *, error: str | None = None) -> dict:
        """Finish a task its engine did not finish (crash, recovery): the log
        gets an error and a task_end event unless it ends the task already,
        whose status then stands (see `finish`). A task already finished is
        returned unchanged."""
        if status not in FINISHED:
            raise ValueError(f"end_task needs a finished status ({', '.join(sorted(FINISHED))}), not {status!r}")
        return self.finish(task_id, end_content(status, error), error=error)[0]


def settle(log_path: Path, state: dict, now: str) -> bool:
    """Move an unfinished `state` (in place) to the status of its log's
    task_end, if the log has one; True when it did (the caller saves it).
    Costs one stat while the log is empty (a pending task)."""
    if state["status"] in FINISHED:
        return False
    end = eventlog.find_end(log_path)
    if end is None:
        return False
    content = end.get("content") if isinstance(end.get("content"), dict) else {}
    status = content.get("status")
    if status not in FINISHED or status not in ALLOWED.get(state["status"], ()):
        # A log a person or a tool edited: guessing would hide that.
        log.error("Task %s: its log ends with a task_end of status %r, which a %s task cannot take; "
                  "left as it is", state["task_id"], status, state["status"])
        return False
    error = content.get("error")
    advance(state, status, now, error=error if isinstance(error, str) else None)
    return True


def missing_end(log_path: Path, state: dict) -> dict | None:
    """The task_end a finished `state` lacks in its log, or None if the log
    has one (or the state is not finished)."""
    if state["status"] not in FINISHED or eventlog.find_end(log_path) is not None:
        return None
    return end_content(state["status"], state.get("error"))


def end_events(end: dict, error: str | None) -> list[tuple[str, dict]]:
    """The lines that record an end: an `error` event when `error` is given
    (its message is also the exception, as no traceback exists), then the
    task_end. They go into the log in one write, so both or neither."""
    events = [("error", {"message": error, "exception": error})] if error else []
    return events + [("task_end", end)]
