"""A callback's outcome, visible to a client that follows the task through
the API: the event stream of a task with a callback_url stays open until the
delivery's last attempt is recorded, and the result carries a `callback`
summary (tests/test_callback_flow.py covers the delivery itself)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import httpx
import requests

from .fake_llm import Reply
from .polling import wait_until
from .test_callbacks import no_proxy, receiver  # noqa: F401  (fixtures)
from .live_server import read_sse

#: What an operator sets for a receiver on the same host.
LOCAL = ["127.0.0.1"]


def stream(server, task_id: str, **params) -> list[tuple[str, dict]]:
    """(type, event) of every event, SSE or NDJSON, read until the server ends the stream."""
    with httpx.stream("GET", f"{server.url}/tasks/{task_id}/events", params=params, timeout=30) as response:
        assert response.status_code == 200
        if params.get("format") == "ndjson":
            lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
            return [(event["type"], event) for event in lines]
        return [(kind, data) for _, kind, data, _ in read_sse(response)]


def result(server, task_id: str) -> dict:
    response = requests.get(f"{server.url}/tasks/{task_id}/result", timeout=10)
    assert response.status_code == 200
    return response.json()


def with_password(url: str) -> str:
    return url.replace("http://", "http://n8n:s3cret-pw@")


def test_the_stream_ends_with_the_delivered_callback(start_server, fake_llm, receiver):
    server = start_server(callback_allowed_hosts=LOCAL, callback_retries=2, callback_backoff_s=0.2)
    receiver.script = [(500, 0)]
    fake_llm.script(Reply("Done."))
    task_id = server.submit("call me back", callback_url=receiver.url)

    events = stream(server, task_id)

    kinds = [kind for kind, _ in events]
    assert kinds[-3:] == ["task_end", "callback", "callback"], kinds
    assert [(e["content"]["attempt"], e["content"]["delivered"]) for _, e in events[-2:]] == [(1, False), (2, True)]
    assert [e["seq"] for _, e in events] == list(range(1, len(events) + 1))


def test_the_result_summarizes_a_delivered_callback_without_its_password(start_server, fake_llm, receiver):
    server = start_server(callback_allowed_hosts=LOCAL)
    fake_llm.script(Reply("Done."))
    task_id = server.submit("call me back", callback_url=with_password(receiver.url))
    events = stream(server, task_id, format="ndjson")  # ends once the delivery is recorded

    body = result(server, task_id)
    summary = body["output"]["callback"]
    shown = f"http://n8n:***@127.0.0.1:{receiver.port}/hook"
    assert summary == {
        "url": shown, "state": "delivered", "attempts": 1, "delivered": True, "status_code": 200,
        "error": None, "last_attempt_at": events[-1][1]["timestamp"], "next_attempt_at": None,
    }
    assert events[-1][1]["content"]["url"] == shown
    assert "s3cret-pw" not in json.dumps(body)


def test_a_failing_receiver_shows_each_attempt_and_the_final_failure(start_server, fake_llm, receiver):
    server = start_server(callback_allowed_hosts=LOCAL, callback_retries=2, callback_backoff_s=1.0)
    receiver.script = [(500, 0)] * 3
    fake_llm.script(Reply("Done."))
    task_id = server.submit("nobody answers", callback_url=receiver.url)

    def first_attempt_made():
        summary = result(server, task_id)["output"]["callback"]
        return summary if summary["attempts"] >= 1 else None

    summary = wait_until(first_attempt_made, timeout=15, what="the first callback attempt in the result")
    assert summary["state"] == "retrying" and summary["delivered"] is False
    assert summary["status_code"] == 500 and summary["error"] == "HTTP 500"
    due = datetime.fromisoformat(summary["next_attempt_at"]) - datetime.fromisoformat(summary["last_attempt_at"])
    assert due == timedelta(seconds=2 ** (summary["attempts"] - 1))  # 1 s, then 2 s: the backoff doubles

    events = stream(server, task_id)
    attempts = [e["content"] for kind, e in events if kind == "callback"]
    assert [(a["attempt"], a["status_code"], a["delivered"]) for a in attempts] == [
        (1, 500, False), (2, 500, False), (3, 500, False)]
    assert events[-1][1]["content"]["next_attempt_in_s"] is None  # the stream ended with the last attempt

    summary = result(server, task_id)["output"]["callback"]
    assert summary["state"] == "failed" and summary["attempts"] == 3 and summary["delivered"] is False
    assert summary["status_code"] == 500 and summary["error"] == "HTTP 500" and summary["next_attempt_at"] is None
    assert len(receiver.requests) == 3


def test_a_stream_resumed_after_task_end_sends_the_callbacks_and_closes(start_server, fake_llm, receiver):
    server = start_server(callback_allowed_hosts=LOCAL)
    fake_llm.script(Reply("Done."))
    task_id = server.submit("call me back", callback_url=receiver.url)
    everything = stream(server, task_id)
    end_seq = next(e["seq"] for kind, e in everything if kind == "task_end")

    started = time.monotonic()
    assert [kind for kind, _ in stream(server, task_id, after=end_seq)] == ["callback"]
    assert stream(server, task_id, after=everything[-1][1]["seq"]) == []  # past the end: nothing, and closed
    assert time.monotonic() - started < 5


def test_a_task_without_callback_url_has_no_summary_and_its_stream_ends_at_task_end(server, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = server.submit("no callback")
    assert [kind for kind, _ in stream(server, task_id)][-1] == "task_end"
    assert result(server, task_id)["output"]["callback"] is None


def test_a_delivery_that_never_reports_does_not_hold_the_stream_forever(start_server, receiver):
    # No worker runs the delivery: the stream gives up once the first
    # attempt is overdue by max_wait_s, and the summary still says pending.
    server = start_server(workers=False, callback_allowed_hosts=LOCAL, callback_timeout_s=0.2, max_wait_s=0.5)
    task_id = server.submit("never runs", callback_url=with_password(receiver.url))
    assert requests.delete(f"{server.url}/tasks/{task_id}", timeout=10).status_code == 200

    started = time.monotonic()
    assert [kind for kind, _ in stream(server, task_id)] == ["task_end"]
    assert time.monotonic() - started < 5
    summary = result(server, task_id)["output"]["callback"]
    assert summary == {
        "url": f"http://n8n:***@127.0.0.1:{receiver.port}/hook", "state": "pending", "attempts": 0,
        "delivered": False, "status_code": None, "error": None, "last_attempt_at": None, "next_attempt_at": None,
    }
    assert receiver.requests == []
