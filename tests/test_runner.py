"""The task runner and recovery when storage misbehaves: no task may stay
`running`, no callback may fire twice, one damaged task stops nothing else."""

from __future__ import annotations

import threading

from actors.recovery import recover
from actors.system import TaskSystem
from storage import StorageFull

from .live_server import app_config
from .fake_llm import Reply
from .polling import wait_until


def make_system(tmp_path, fake_llm, **settings) -> TaskSystem:
    return TaskSystem(app_config(tmp_path, fake_llm, **settings))


def _refuse_ends(system, monkeypatch, refusing) -> dict[str, int]:
    """Make the store refuse to record ends, as a full disk does, while
    `refusing()` is true; returns the count of refused tries per task."""
    refused: dict[str, int] = {}
    real = system.store.finish

    def finish(task_id, end, **kwargs):
        if refusing():
            refused[task_id] = refused.get(task_id, 0) + 1
            raise StorageFull("cannot record the end: no space left on device")
        return real(task_id, end, **kwargs)

    monkeypatch.setattr(system.store, "finish", finish)
    return refused


def test_a_passing_storage_failure_at_the_end_is_retried_by_the_worker(tmp_path, fake_llm, monkeypatch):
    system = make_system(tmp_path, fake_llm, end_retry_backoff_s=0.01)
    fake_llm.script(Reply("Done."))
    task_id = system.store.create("x")["task_id"]
    failures = iter([True, True])
    _refuse_ends(system, monkeypatch, lambda: next(failures, False))
    system.runner.run(task_id)
    assert system.store.get(task_id)["status"] == "completed"
    assert [e["type"] for e in system.store.read_events(task_id)][-1] == "task_end"
    assert system.runner.pending_ends().waiting() == []  # nothing was left to the background


def test_an_end_refused_past_the_workers_tries_is_recorded_in_the_background(tmp_path, fake_llm, monkeypatch):
    system = make_system(tmp_path, fake_llm, end_retry_inline_s=0, end_retry_backoff_s=0.01,
                         end_retry_max_backoff_s=0.05)
    fake_llm.script(Reply("Done."))
    task_id = system.store.create("x")["task_id"]
    disk_full = threading.Event()
    disk_full.set()
    _refuse_ends(system, monkeypatch, disk_full.is_set)
    finished: list[str] = []
    called_back = threading.Event()
    system.runner.on_finished = lambda task: (finished.append(task), called_back.set())

    system.runner.run(task_id)  # the worker is free again while the disk is full
    assert system.store.get(task_id)["status"] == "running"
    assert system.runner.pending_ends().waiting() == [task_id]
    finished.clear()  # run() itself reported the task (see TaskRunner._run)
    called_back.clear()
    disk_full.clear()
    assert called_back.wait(10), "the end was not recorded once storage took it"
    state = system.store.get(task_id)
    end = system.store.read_events(task_id)[-1]
    assert state["status"] == end["content"]["status"] == "completed" and end["content"]["answer"] == "Done."
    assert finished == [task_id] and system.runner.pending_ends().waiting() == []


def _full_pending_ends(tmp_path, fake_llm, monkeypatch):
    """A system whose PendingEnds holds its one allowed end (of `first`)
    while storage refuses ends, and a second task whose run has begun on
    a worker thread."""
    system = make_system(tmp_path, fake_llm, end_retry_inline_s=0, end_retry_backoff_s=0.01,
                         end_retry_max_backoff_s=0.05, end_retry_max_tasks=1)
    fake_llm.responder = lambda body: Reply("Done.")
    disk_full = threading.Event()
    disk_full.set()
    refused = _refuse_ends(system, monkeypatch, disk_full.is_set)
    first, second = (system.store.create(name)["task_id"] for name in ("first", "second"))
    system.runner.run(first)
    assert system.runner.pending_ends().waiting() == [first]
    worker = threading.Thread(target=system.runner.run, args=(second,))
    worker.start()
    return system, disk_full, refused, second, worker


def test_a_worker_keeps_trying_an_end_itself_while_pending_ends_are_full(tmp_path, fake_llm, monkeypatch):
    system, disk_full, refused, second, worker = _full_pending_ends(tmp_path, fake_llm, monkeypatch)
    wait_until(lambda: refused.get(second, 0) >= 3, what="the worker trying again")
    assert worker.is_alive() and second not in system.runner.pending_ends().waiting()
    disk_full.clear()
    worker.join(10)
    assert not worker.is_alive() and system.store.get(second)["status"] == "completed"


def test_a_stopping_process_ends_a_workers_own_tries_leaving_the_task_running(tmp_path, fake_llm, monkeypatch):
    system, disk_full, refused, second, worker = _full_pending_ends(tmp_path, fake_llm, monkeypatch)
    wait_until(lambda: refused.get(second, 0) >= 1, what="the worker trying")
    system.runner.stopping.set()
    worker.join(10)
    assert not worker.is_alive() and system.store.get(second)["status"] == "running"


def test_a_task_cancelled_while_pending_is_not_called_back_twice(tmp_path, fake_llm):
    system = make_system(tmp_path, fake_llm)
    finished: list[str] = []
    system.runner.on_finished = finished.append
    task_id = system.store.create("x", extra={"callback_url": "http://127.0.0.1:9/hook"})["task_id"]
    system.store.request_cancel(task_id)  # the API queues this task's callback itself
    system.runner.run(task_id)  # then the queued run message arrives
    assert finished == []


def test_recovery_skips_a_damaged_task_and_recovers_the_rest(tmp_path, fake_llm):
    system = make_system(tmp_path, fake_llm)
    store = system.store
    damaged = store.create("damaged")["task_id"]
    store.transition(damaged, "running")
    (store.tasks_dir / damaged / "events.jsonl").unlink()
    healthy = store.create("healthy")["task_id"]
    store.transition(healthy, "running")
    pending = store.create("pending")["task_id"]

    requeued, failed = recover(system.store, system.pipeline)
    assert (requeued, failed) == (1, 1)
    assert store.get(healthy)["status"] == "error" and store.get(pending)["status"] == "pending"


def test_cleanup_keeps_idempotency_keys_for_the_configured_retention(tmp_path, fake_llm):
    system = make_system(tmp_path, fake_llm)
    task_id = system.store.create("x")["task_id"]
    assert system.keys.claim("k", task_id) is None
    system.cleanup(0)
    assert system.keys.claim("k", "other") == task_id
