"""Recording metrics (actors/metrics.py) where the pipeline does: callback
attempts as `CallbackSender` makes them (its `post` injected, so no network),
label values kept to fixed lists, and errors that never reach the task."""

from __future__ import annotations

import logging

import pytest

from actors.callbacks import CallbackPolicy, CallbackSender
from actors.metrics import CALLBACK_ATTEMPTS, CALLBACK_DELIVERIES, CODE_BLOCKS, Tally, TaskMetrics
from storage import TaskStore

HOOK = "https://hooks.example/done"


@pytest.fixture
def store(tmp_path):
    opened = TaskStore(tmp_path)
    yield opened
    opened.close()


def finished_task(store: TaskStore, callback_url: str) -> str:
    task_id = store.create("count callbacks", extra={"callback_url": callback_url})["task_id"]
    store.transition(task_id, "running")
    store.end_task(task_id, "completed")
    return task_id


def counted(metrics: TaskMetrics, family, *labels: str) -> float:
    return metrics.tally.snapshot().get(family.name, {}).get(labels, [0.0])[0]


def answering(*statuses: int):
    """A `post` that answers the given statuses in turn."""
    answers = list(statuses)
    return lambda url, body, headers, timeout_s: answers.pop(0)


def test_a_delivery_that_succeeds_after_a_failure_counts_both_attempts_and_one_delivery(store):
    metrics = TaskMetrics()
    sender = CallbackSender(store, CallbackPolicy(retries=2), post=answering(500, 204),
                            on_attempt=metrics.callback_attempt)
    task_id = finished_task(store, HOOK)
    assert sender.deliver(task_id, 1) is not None  # another attempt is due
    assert counted(metrics, CALLBACK_DELIVERIES, "failed") == 0
    assert sender.deliver(task_id, 2) is None
    assert counted(metrics, CALLBACK_ATTEMPTS, "failed") == 1 and counted(metrics, CALLBACK_ATTEMPTS, "delivered") == 1
    assert counted(metrics, CALLBACK_DELIVERIES, "delivered") == 1


def test_a_delivery_out_of_retries_counts_as_failed(store):
    metrics = TaskMetrics()
    sender = CallbackSender(store, CallbackPolicy(retries=0), post=answering(503), on_attempt=metrics.callback_attempt)
    assert sender.deliver(finished_task(store, HOOK), 1) is None
    assert counted(metrics, CALLBACK_DELIVERIES, "failed") == 1


def test_a_refused_target_counts_a_refused_delivery_and_no_attempt(store):
    metrics = TaskMetrics()
    sender = CallbackSender(store, CallbackPolicy(), post=answering(), on_attempt=metrics.callback_attempt)
    assert sender.deliver(finished_task(store, "http://127.0.0.1:9/hook"), 1) is None  # loopback: not allowed
    assert counted(metrics, CALLBACK_DELIVERIES, "refused") == 1
    assert counted(metrics, CALLBACK_ATTEMPTS, "failed") == counted(metrics, CALLBACK_ATTEMPTS, "delivered") == 0


def test_an_unknown_block_outcome_counts_as_other():
    metrics = TaskMetrics()
    metrics.engine_event("fake", "exec_result", {"result": {"status": "exploded"}})
    metrics.engine_event("fake", "exec_result", {"result": {"status": "timeout"}})
    assert counted(metrics, CODE_BLOCKS, "other") == 1 and counted(metrics, CODE_BLOCKS, "timeout") == 1


def test_a_recording_error_is_logged_once_and_never_raised(caplog):
    metrics = TaskMetrics(Tally())
    with caplog.at_level(logging.ERROR, logger="aipy.metrics"):
        metrics.task_started({})  # no timestamps to read: a bug's shape
        metrics.task_started({"created_at": "not a time", "started_at": None})
    assert metrics.failed
    assert len([record for record in caplog.records if record.name == "aipy.metrics"]) == 1
