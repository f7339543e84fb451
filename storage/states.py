"""The task state machine and the shape of a task's state (task.json).

Kept apart from the file handling so the rules read in one screen:
``pending → running → completed | error | cancelled``, ``pending →
cancelled`` (cancelled before it started), ``pending → error`` (could not even
start); nothing leaves a finished state.
"""

from __future__ import annotations

from typing import Literal, get_args

from .errors import InvalidTransition

#: A task's status: the one place the five names are written.
Status = Literal["pending", "running", "completed", "error", "cancelled"]
STATUSES: tuple[str, ...] = get_args(Status)
FINISHED = frozenset({"completed", "error", "cancelled"})
ALLOWED = {
    "pending": frozenset({"running", "cancelled", "error"}),
    "running": frozenset({"completed", "error", "cancelled"}),
}

#: The fields of GET /tasks/{id}, which also head the result body.
STATUS_FIELDS = ("task_id", "instruction", "status", "created_at", "started_at", "completed_at", "error")
#: The fields of one task in GET /tasks.
SUMMARY_FIELDS = ("task_id", "instruction", "status", "created_at", "started_at", "completed_at")


def state_problem(state: object, task_id: str) -> str | None:
    """What makes `state` unusable as this task's state, or None. A damaged
    task.json (a crash, a hand edit, code that wrote to it) must read as
    damaged, not break every listing that includes it."""
    if not isinstance(state, dict):
        return "does not hold a task state"
    if state.get("task_id") != task_id:
        return "names another task"
    if state.get("status") not in STATUSES:
        return f"has an unknown status {state.get('status')!r}"
    for field in ("instruction", "created_at"):
        if not isinstance(state.get(field), str):
            return f"lacks its {field}"
    for field in ("started_at", "completed_at", "error"):
        if not isinstance(state.get(field), (str, type(None))):
            return f"has a bad {field}"
    for field in ("metadata", "options", "context"):
        if not isinstance(state.get(field, {}), dict):
            return f"has a bad {field}"
    return None


def new_state(task_id: str, instruction: str, created_at: str, metadata: dict | None,
              options: dict | None, extra: dict | None) -> dict:
    """The state of a task just submitted. `extra` (e.g. an idempotency key)
    is merged at the top level but may not replace a field of the store."""
    state = {
        "task_id": task_id, "instruction": instruction, "status": "pending",
        "created_at": created_at, "started_at": None, "completed_at": None, "error": None,
        "metadata": dict(metadata or {}), "options": dict(options or {}), "context": {},
        "cancel_requested": False,
    }
    clash = sorted(set(extra or {}) & set(state))
    if clash:
        raise ValueError(f"extra fields {clash} would replace the task's own fields")
    state.update(extra or {})
    return state


def advance(state: dict, target: str, now: str, *, error: str | None = None, context: dict | None = None) -> None:
    """Move `state` to `target` in place, or raise InvalidTransition."""
    current = state["status"]
    if target not in ALLOWED.get(current, ()):
        raise InvalidTransition(state["task_id"], current, target)
    state["status"] = target
    if target == "running":
        state["started_at"] = now
    if target in FINISHED:
        state["completed_at"] = now
    if error is not None:
        state["error"] = error
    if context:
        state["context"] = {**(state.get("context") or {}), **context}


def end_content(status: str, error: str | None = None) -> dict:
    """The task_end event of a task the engine did not finish itself
    (cancelled while pending, or ended by recovery after a crash)."""
    return {"status": status, "answer": None, "error": error, "rounds": 0, "duration_ms": 0,
            "usage": {"input_tokens": 0, "output_tokens": 0}}


def summary(state: dict) -> dict:
    """One task as GET /tasks lists it."""
    return {field: state.get(field) for field in SUMMARY_FIELDS}
