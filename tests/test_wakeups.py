"""Idle consumers sleep until a message is sent (actors/wakeups.py): a sent
message starts long before the idle consumer's own next look, with the
embedded broker and over Redis; a lost wake-up notice is made good by that
next look; a delayed message and messages past the prefetch still run."""

from __future__ import annotations

import threading

import dramatiq
import pytest

from actors.broker import make_broker

#: The idle consumer's own look: far longer than any wait below, so a
#: message that runs within WAIT_S was woken for, not found by a look.
IDLE_MS = 10_000
WAIT_S = 5


class Recorder:
    """An actor on `broker` that counts its runs; `wait(n)` for n of them."""

    def __init__(self, broker: dramatiq.Broker):
        self.runs = 0
        self.changed = threading.Condition()
        self.actor = dramatiq.actor(self._run, broker=broker, actor_name="record", queue_name="wakeups")

    def _run(self, n: int) -> None:
        with self.changed:
            self.runs += 1
            self.changed.notify_all()

    def wait(self, n: int, timeout: float = WAIT_S) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.runs >= n, timeout)


@pytest.fixture(params=["embedded", "redis"])
def broker(request, tmp_path):
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    broker = make_broker(url)
    yield broker
    broker.close()


def start_worker(broker: dramatiq.Broker, idle_ms: int = IDLE_MS, threads: int = 2) -> dramatiq.Worker:
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=idle_ms)
    worker.start()
    return worker


@pytest.fixture
def recorder(broker):
    return Recorder(broker)


def test_a_sent_message_wakes_an_idle_worker(broker, recorder):
    worker = start_worker(broker)
    try:
        recorder.actor.send(1)
        assert recorder.wait(1)
    finally:
        worker.stop(timeout=100)


def test_messages_past_the_prefetch_run_as_slots_free(broker, recorder):
    worker = start_worker(broker, threads=1)  # Dramatiq prefetches 2 per thread
    try:
        for n in range(6):
            recorder.actor.send(n)
        assert recorder.wait(6)
    finally:
        worker.stop(timeout=100)


def test_a_delayed_message_runs_once_due(broker, recorder):
    worker = start_worker(broker)
    try:
        recorder.actor.send_with_options(args=(1,), delay=200)
        assert recorder.wait(1)
    finally:
        worker.stop(timeout=100)


def test_a_lost_notice_is_made_good_by_the_next_look(redis_server):
    broker = make_broker(redis_server.url)
    broker.waker.notify = lambda queue_name: None  # every notice lost
    recorder = Recorder(broker)
    worker = start_worker(broker, idle_ms=300)
    try:
        recorder.actor.send(1)
        assert recorder.wait(1)
    finally:
        worker.stop(timeout=1000)
        broker.close()
