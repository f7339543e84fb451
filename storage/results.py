"""The body of GET /tasks/{id}/result, assembled from a task's state and its
event log — the log is the only record of what happened, so the result is
always derived, never stored twice."""

from __future__ import annotations

from .states import STATUS_FIELDS


def build_result(state: dict, events: list[dict]) -> dict:
    """The spec's result: the status fields plus ``output`` (messages,
    results, errors, metadata) and the final ``answer`` (None until a
    task_end event carries one)."""
    messages: list[dict] = []
    results: list[dict] = []
    errors: list[dict] = []
    answer = None
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
    body = {field: state.get(field) for field in STATUS_FIELDS}
    body["output"] = {
        "messages": messages,
        "results": results,
        "errors": errors,
        "metadata": {**(state.get("metadata") or {}), "instruction": state.get("instruction"),
                     **(state.get("context") or {})},
        "answer": answer,
    }
    return body
