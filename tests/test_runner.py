"""The task runner and recovery when storage misbehaves: no task may stay
`running`, no callback may fire twice, one damaged task stops nothing else."""

from __future__ import annotations

from actors.system import TaskSystem
from storage import StorageError

from .conftest import app_config
from .fake_llm import Reply


def make_system(tmp_path, fake_llm, **settings) -> TaskSystem:
    return TaskSystem(app_config(tmp_path, fake_llm, **settings))


def test_a_passing_storage_failure_at_the_end_is_retried(tmp_path, fake_llm, monkeypatch):
    system = make_system(tmp_path, fake_llm)
    fake_llm.script(Reply("Done."))
    task_id = system.store.create("x")["task_id"]
    real = system.store.transition
    failures = iter([True, True])

    def flaky(task, target, **kwargs):
        if target == "completed" and next(failures, False):
            raise StorageError("no space left on device")
        return real(task, target, **kwargs)

    monkeypatch.setattr(system.store, "transition", flaky)
    monkeypatch.setattr("actors.runner.RECORD_RETRY_PAUSES_S", (0.01, 0.01, 0.01))
    system.runner.run(task_id)
    assert system.store.get(task_id)["status"] == "completed"


def test_a_lasting_storage_failure_at_the_end_still_ends_the_task(tmp_path, fake_llm, monkeypatch):
    system = make_system(tmp_path, fake_llm)
    fake_llm.script(Reply("Done."))
    task_id = system.store.create("x")["task_id"]
    real = system.store.transition

    def broken(task, target, **kwargs):
        if target == "completed":
            raise StorageError("no space left on device")
        return real(task, target, **kwargs)

    monkeypatch.setattr(system.store, "transition", broken)
    monkeypatch.setattr("actors.runner.RECORD_RETRY_PAUSES_S", (0.01,))
    system.runner.run(task_id)
    state = system.store.get(task_id)
    assert state["status"] == "error" and "could not record" in state["error"]


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

    requeued, failed = system.recover()
    assert (requeued, failed) == (1, 1)
    assert store.get(healthy)["status"] == "error" and store.get(pending)["status"] == "pending"


def test_cleanup_keeps_idempotency_keys_for_the_configured_retention(tmp_path, fake_llm):
    system = make_system(tmp_path, fake_llm)
    task_id = system.store.create("x")["task_id"]
    assert system.keys.claim("k", task_id) is None
    system.cleanup_now(0)
    assert system.keys.claim("k", "other") == task_id
