"""A queue that loses its messages (Redis back empty) loses no task, and no
task runs twice: the reconciler sends each lost task again, once per loss,
and the runner ignores a message for a running task that did not start it."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis
from dramatiq.middleware import Middleware

from actors.pipeline import TASK_QUEUE
from actors.queue_view import RedisQueueView
from actors.reconciler import REQUEUED, Reconciler
from actors.recovery import recover
from actors.runner import INTERRUPTED_WORKER_DIED
from actors.system import TaskSystem
from storage import TaskStore

from .fake_llm import Reply
from .live_server import Processes, app_config
from .polling import wait_until
from .redis_server import RedisServer

#: Every task that is given time to finish is final within this long.
FINAL_WITHIN_S = 90


def later(seconds: float):
    """A reconciler clock `seconds` ahead of now: every task looks that old."""
    return lambda: datetime.now(timezone.utc) + timedelta(seconds=seconds)


def requeued(store: TaskStore, task_id: str) -> int:
    return sum(event["type"] == REQUEUED for event in store.read_events(task_id))


def asked(fake_llm, instruction: str) -> int:
    """How many LLM requests carried this instruction: one per run here."""
    return sum(instruction in json.dumps(request["body"]) for request in fake_llm.requests)


def status_of(store: TaskStore, task_id: str) -> str:
    return store.get(task_id)["status"]


@pytest.fixture
def redis_system(tmp_path, fake_llm, redis_server):
    """The task system over a real Redis, with no worker: messages stay put."""
    system = TaskSystem(app_config(tmp_path, fake_llm, redis_url=redis_server.url))
    yield system
    system.stop()


@pytest.fixture
def embedded_system(tmp_path, fake_llm):
    systems: list[TaskSystem] = []

    def make() -> TaskSystem:
        systems.append(TaskSystem(app_config(tmp_path, fake_llm)))
        return systems[-1]

    yield make
    for system in systems:
        system.stop(timeout_s=5)


# -- the reconciler over Redis ----------------------------------------------------


def test_a_task_whose_message_redis_lost_is_sent_again_once(redis_system):
    store = redis_system.store
    task_id = store.create("lost in a restart")["task_id"]
    redis_system.pipeline.submit(task_id)
    redis_system.broker.client.flushall()  # Redis came back empty
    reconciler = Reconciler(store, redis_system.pipeline.run_task, requeue_after_s=60, clock=later(120))

    assert reconciler.run_once() == [task_id]
    assert reconciler.run_once() == []  # the re-sent message is in the queue now
    assert requeued(store, task_id) == 1
    assert redis_system.broker.client.llen(f"dramatiq:{TASK_QUEUE}") == 1
    event = [e for e in store.read_events(task_id) if e["type"] == REQUEUED][0]
    assert "lost" in event["content"]["reason"] and event["content"]["message_id"]


def test_messages_waiting_fetched_delayed_or_dead_lettered_are_not_sent_again(redis_system):
    store, broker = redis_system.store, redis_system.broker
    waiting, fetched, delayed, dead = (store.create(name)["task_id"] for name in ("w", "f", "d", "x"))
    for task_id in (fetched, dead):
        redis_system.pipeline.submit(task_id)
    consumer = broker.consume(TASK_QUEUE, prefetch=2, timeout=100)
    taken = []

    def fetched_both() -> bool:
        message = next(consumer)  # None until a fetch brings one
        if message is not None:
            taken.append(message)
        return len(taken) == 2

    wait_until(fetched_both, what="both messages fetched")
    assert {message.args[0] for message in taken} == {fetched, dead}
    for message in taken:
        if message.args[0] == dead:  # its run raised: Retries(max_retries=0) dead-letters it
            consumer.nack(message)
    redis_system.pipeline.submit(waiting)
    redis_system.pipeline.run_task.send_with_options(args=(delayed,), delay=3_600_000)
    reconciler = Reconciler(store, redis_system.pipeline.run_task, requeue_after_s=60, clock=later(120))

    assert reconciler.run_once() == []
    assert all(requeued(store, task_id) == 0 for task_id in (waiting, fetched, delayed, dead))


def test_a_young_pending_task_is_left_alone_as_its_message_may_be_on_its_way(redis_system):
    task_id = redis_system.store.create("just submitted")["task_id"]
    reconciler = Reconciler(redis_system.store, redis_system.pipeline.run_task, requeue_after_s=60)
    assert reconciler.run_once() == []
    assert requeued(redis_system.store, task_id) == 0


def test_two_reconcilers_that_both_saw_the_loss_send_the_task_once(redis_system):
    store, actor = redis_system.store, redis_system.pipeline.run_task
    task_id = store.create("seen lost twice")["task_id"]
    first = Reconciler(store, actor, requeue_after_s=60, clock=later(120))
    second_view = RedisQueueView(actor)
    seen_before = second_view.held()  # the second looked before the first sent

    class LateView:
        def held(self):
            return seen_before

        def claim(self, task_id, ttl_s):
            return second_view.claim(task_id, ttl_s)

    second = Reconciler(store, actor, requeue_after_s=60, view=LateView(), clock=later(120))
    assert first.run_once() == [task_id]
    assert second.run_once() == []
    assert requeued(store, task_id) == 1


def test_a_reconcile_pass_with_redis_down_is_skipped_without_raising(redis_system, redis_server):
    task_id = redis_system.store.create("waiting for redis")["task_id"]
    reconciler = Reconciler(redis_system.store, redis_system.pipeline.run_task, requeue_after_s=60, clock=later(120))
    redis_server.stop()
    assert reconciler.run_once() == []
    assert requeued(redis_system.store, task_id) == 0
    assert status_of(redis_system.store, task_id) == "pending"


# -- the reconciler in embedded mode ------------------------------------------------


def test_embedded_mode_sends_a_lost_task_once_and_leaves_a_queued_one(embedded_system, fake_llm):
    system = embedded_system()
    fake_llm.responder = lambda body: Reply("Done.")
    queued = system.store.create("queued in memory")["task_id"]
    system.pipeline.submit(queued)
    lost = system.store.create("never queued")["task_id"]  # as if its message were lost
    reconciler = Reconciler(system.store, system.pipeline.run_task, requeue_after_s=60, clock=later(120))

    assert reconciler.run_once() == [lost]
    assert reconciler.run_once() == []
    system.start_workers(threads=2)
    for task_id in (queued, lost):
        wait_until(lambda: status_of(system.store, task_id) == "completed", timeout=30, what="the task to complete")
    assert reconciler.run_once() == []  # acked messages leave no trace
    assert (requeued(system.store, queued), requeued(system.store, lost)) == (0, 1)
    assert asked(fake_llm, "queued in memory") == asked(fake_llm, "never queued") == 1


def test_after_an_embedded_restart_the_recovered_tasks_are_not_sent_twice(tmp_path, fake_llm, embedded_system):
    before = embedded_system()
    waiting = [before.store.create(f"waiting {i}")["task_id"] for i in range(3)]
    for task_id in waiting:
        before.pipeline.submit(task_id)  # then the process stops: its in-memory queue is gone
    after = embedded_system()
    assert recover(after.store, after.pipeline) == (3, 0)  # sends every pending task again
    # What a starting worker runs (see the reconciler's worker-start line).
    reconciler = Reconciler(after.store, after.pipeline.run_task, requeue_after_s=60, clock=later(120))
    assert reconciler.run_once() == []


def test_a_tracker_attached_late_knows_the_messages_already_waiting(embedded_system):
    from dramatiq.brokers.stub import StubBroker

    from actors.broker import middleware
    from actors.queue_view import StubQueueView

    system = TaskSystem(embedded_system().config, broker=StubBroker(middleware=middleware()))
    try:
        task_id = system.store.create("sent before the tracker")["task_id"]
        system.pipeline.submit(task_id)
        assert StubQueueView(system.pipeline.run_task).held().queued == {task_id}
    finally:
        system.stop(timeout_s=5)


# -- the runner: duplicates and redeliveries ---------------------------------------


class Processed(Middleware):
    """Tells the test which messages a worker finished processing."""

    def __init__(self):
        self.ids: set[str] = set()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        self.ids.add(message.message_id)


def test_a_duplicate_message_for_a_running_task_is_ignored_and_the_task_completes(embedded_system, fake_llm):
    system = embedded_system()
    processed = Processed()
    system.broker.add_middleware(processed)
    gate = threading.Event()
    fake_llm.responder = lambda body: (gate.wait(20), Reply("Done."))[1]
    system.start_workers(threads=2)
    task_id = system.store.create("run me once")["task_id"]
    system.pipeline.submit(task_id)
    wait_until(lambda: asked(fake_llm, "run me once"), timeout=30, what="the task to ask the LLM")
    assert status_of(system.store, task_id) == "running"

    duplicate = system.pipeline.run_task.send(task_id)  # a re-send that raced the real message
    wait_until(lambda: duplicate.message_id in processed.ids, timeout=30, what="the duplicate to be processed")
    assert status_of(system.store, task_id) == "running"  # untouched
    gate.set()
    wait_until(lambda: status_of(system.store, task_id) != "running", timeout=30, what="the task to finish")

    state = system.store.get(task_id)
    assert state["status"] == "completed" and state["error"] is None
    assert asked(fake_llm, "run me once") == 1
    assert [e["type"] for e in system.store.read_events(task_id)].count("task_start") == 1
    assert state["context"]["message_id"] != duplicate.message_id


def test_two_messages_for_one_pending_task_at_the_same_moment_run_it_once(embedded_system, fake_llm):
    system = embedded_system()
    fake_llm.responder = lambda body: Reply("Done.")
    both_read_pending = threading.Barrier(2, timeout=20)
    build = system.engines.build

    def build_together(options):
        both_read_pending.wait()  # each has read `pending`; only one may start it
        return build(options)

    system.engines.build = build_together
    system.start_workers(threads=2)
    task_id = system.store.create("raced")["task_id"]
    system.pipeline.submit(task_id)
    system.pipeline.run_task.send(task_id)

    wait_until(lambda: status_of(system.store, task_id) == "completed", timeout=30, what="the task to complete")
    system.broker.join(TASK_QUEUE, timeout=30_000)  # both messages processed
    assert asked(fake_llm, "raced") == 1
    assert [e["type"] for e in system.store.read_events(task_id)].count("task_start") == 1


def test_the_starting_message_redelivered_after_its_worker_died_ends_the_task(embedded_system, fake_llm):
    system = embedded_system()
    task_id = system.store.create("its worker died")["task_id"]
    message = system.pipeline.run_task.message(task_id)
    # The worker that took this message started the task, then died.
    system.store.transition(task_id, "running", context={"message_id": message.message_id})
    system.start_workers(threads=1)
    system.broker.enqueue(message)  # Redis gives a dead worker's message back as it was

    wait_until(lambda: status_of(system.store, task_id) != "running", timeout=30, what="the task to end")
    state = system.store.get(task_id)
    assert state["status"] == "error" and state["error"] == INTERRUPTED_WORKER_DIED
    assert fake_llm.requests == []


# -- the whole: Redis restarts empty under the Procfile's worker and clock ---------


def test_tasks_queued_when_redis_came_back_empty_all_run_once(tmp_path, fake_llm, redis_server):
    fake_llm.responder = lambda body: Reply("Done.")
    group = Processes(tmp_path, fake_llm, REDIS_URL=redis_server.url, AIPYTHON_REQUEUE_PENDING_AFTER_S="1",
                      AIPYTHON_RECONCILE_INTERVAL_S="1")
    # Submits as the web process does (store, then send), sharing the
    # processes' data folder, without a web server to bind.
    web = TaskSystem(app_config(tmp_path, fake_llm, redis_url=redis_server.url))
    store = web.store

    def submit(instruction: str) -> str:
        task_id = store.create(instruction)["task_id"]
        web.pipeline.submit(task_id)
        return task_id

    def pending_s(task_id: str) -> float:
        created = datetime.fromisoformat(store.get(task_id)["created_at"].replace("Z", "+00:00"))
        return (datetime.now(timezone.utc) - created).total_seconds()

    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    back = None
    try:
        lost = {name: submit(name) for name in ("lost alpha", "lost bravo", "lost charlie")}
        assert client.llen(f"dramatiq:{TASK_QUEUE}") == 3  # no worker: all waiting in Redis

        redis_server.stop()  # by its PID; it keeps nothing on disk
        back = RedisServer(tmp_path, port=redis_server.port)
        restarted = time.monotonic()
        assert client.llen(f"dramatiq:{TASK_QUEUE}") == 0
        kept = submit("sent after the restart")  # its message is in the new Redis

        # Old enough for the clock's first pass to weigh it, and find it queued.
        wait_until(lambda: pending_s(kept) > 1.5, timeout=10,
                   what="the kept task to be older than requeue_pending_after_s")
        group.start("-m", "actors.clock")
        wait_until(lambda: all(requeued(store, t) for t in lost.values()), timeout=30,
                   what="the lost tasks to be sent again")
        assert requeued(store, kept) == 0

        group.start("-m", "actors.worker")
        for task_id in [*lost.values(), kept]:
            left = FINAL_WITHIN_S - (time.monotonic() - restarted)
            wait_until(lambda: status_of(store, task_id) in ("completed", "error"), timeout=left,
                       what="every task to finish")
            assert status_of(store, task_id) == "completed", store.result(task_id)
        for name, task_id in lost.items():
            assert requeued(store, task_id) == 1, name
            assert asked(fake_llm, name) == 1, name
        assert requeued(store, kept) == 0 and asked(fake_llm, "sent after the restart") == 1
    finally:
        group.stop_all()
        web.stop()
        if back is not None:
            back.stop()
