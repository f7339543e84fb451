"""The body of GET /tasks/{id}/result, assembled from a task's state and its
event log — the log is the only record of what happened, so the result is
always derived, never stored twice."""

from __future__ import annotations

import urllib.parse
from datetime import timedelta

from .states import STATUS_FIELDS
from .times import format_ts, parse_ts

#: Where a task's callback stands (`callback_summary`): no attempt made yet,
#: the last failed and another is due, the last succeeded, or no retry is left.
CALLBACK_STATES = ("pending", "retrying", "delivered", "failed")


def build_result(state: dict, events: list[dict]) -> dict:
    """The spec's result: the status fields plus ``output`` (messages,
    results, errors, metadata), the final ``answer`` (None until a task_end
    event carries one) and ``callback`` (see `callback_summary`)."""
    messages: list[dict] = []
    results: list[dict] = []
    errors: list[dict] = []
    answer = None
    last_callback = None
    attempts = 0
    for event in events:
        kind, content = event["type"], event.get("content")
        messages.append({"type": kind, "content": content, "timestamp": event.get("timestamp")})
        fields = content if isinstance(content, dict) else {}
        if kind == "exec_result":
            results.append({"block_name": fields.get("block_name"), "language": fields.get("language"),
                            "result": fields.get("result")})
        elif kind == "error":
            errors.append({"message": fields.get("message"), "exception": fields.get("exception")})
        elif kind == "task_end":
            answer = fields.get("answer")
        elif kind == "callback":
            attempts += 1
            last_callback = event
    body = {field: state.get(field) for field in STATUS_FIELDS}
    body["output"] = {
        "messages": messages,
        "results": results,
        "errors": errors,
        "metadata": {**(state.get("metadata") or {}), "instruction": state.get("instruction"),
                     **run_context(state), **_lineage(state)},
        "answer": answer,
        "callback": callback_summary(state.get("callback_url"), last_callback, attempts),
    }
    return body


def _lineage(state: dict) -> dict:
    """The task a follow-up continues, for its result's metadata."""
    previous = state.get("previous_task_id")
    return {"previous_task_id": previous} if previous else {}


#: Run bookkeeping kept in a task's context that callers have no use for.
_INTERNAL_CONTEXT = frozenset({"message_id"})


def run_context(state: dict) -> dict:
    """The run context shown in the result's metadata (llm, model...)."""
    return {k: v for k, v in (state.get("context") or {}).items() if k not in _INTERNAL_CONTEXT}


def callback_summary(url: str | None, last: dict | None, attempts: int) -> dict | None:
    """Where the delivery of a task's callback stands, from its last
    ``callback`` event (`last`, None before the first attempt) and the number
    of attempts made; None for a task without a ``callback_url``. Kept in the
    result so a client that stops reading at ``task_end`` (or only polls)
    still learns whether its webhook was reached."""
    if not url:
        return None
    content = last.get("content") if last else None
    content = content if isinstance(content, dict) else {}
    delivered = content.get("delivered") is True
    next_in = content.get("next_attempt_in_s")
    return {
        "url": content.get("url") or shown_url(url),
        "state": callback_state(last),
        "attempts": attempts,
        "delivered": delivered,
        "status_code": content.get("status_code"),
        "error": content.get("error"),
        "last_attempt_at": last.get("timestamp") if last else None,
        "next_attempt_at": _later(last.get("timestamp"), next_in) if last and not delivered else None,
    }


def callback_state(last: dict | None) -> str:
    """One of CALLBACK_STATES for a callback whose last attempt's event is
    `last` (None: no attempt yet). The sender writes ``next_attempt_in_s``
    exactly when it schedules another attempt, so null there means final."""
    if last is None:
        return "pending"
    content = last.get("content") if isinstance(last.get("content"), dict) else {}
    if content.get("delivered") is True:
        return "delivered"
    return "retrying" if content.get("next_attempt_in_s") is not None else "failed"


def shown_url(url: str) -> str:
    """`url` as the task's log shows it: a password in it becomes ``***``
    (``https://user:***@host/…``), so the result never repeats a secret."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = urllib.parse.unquote(userinfo.partition(":")[0])
    return parts._replace(netloc=f"{urllib.parse.quote(user, safe='')}:***@{hostport}").geturl()


def _later(timestamp: object, seconds: object) -> str | None:
    """`timestamp` plus `seconds` in the stored format; None when either is
    missing or unreadable (a hand-edited log must not break the result)."""
    if not isinstance(timestamp, str) or not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return None
    try:
        return format_ts(parse_ts(timestamp) + timedelta(seconds=seconds))
    except (ValueError, OverflowError):
        return None
