"""Idle worker threads (actors/idle_workers.py) wait for a message or a stop,
not on a short timeout: a message still runs at once, a stop still ends
them at once, and while idle they do not wake on their own."""

from __future__ import annotations

import threading
import time

import dramatiq

from actors.broker import make_broker
from actors.idle_workers import IDLE_WAIT_S, WakeableWorkQueue, start_quietly

from .test_wakeups import Recorder


def test_a_stop_wakes_idle_threads_at_once_and_a_message_still_runs():
    broker = make_broker(None)
    recorder = Recorder(broker)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    try:
        start_quietly(worker)
        assert [thread.timeout for thread in worker.workers] == [IDLE_WAIT_S] * 4
        recorder.actor.send(1)
        assert recorder.wait(1)
    finally:
        started = time.monotonic()
        worker.stop(timeout=30_000)
        stopped_in = time.monotonic() - started
        broker.close()
    # Without the wake, each idle thread would sit out its wait (a minute).
    assert stopped_in < 10 and not any(thread.is_alive() for thread in worker.workers)


def test_a_waiting_get_ends_on_wake_and_items_are_still_taken_after_it():
    queue = WakeableWorkQueue()
    ended = threading.Event()

    def wait() -> None:
        try:
            queue.get(timeout=IDLE_WAIT_S)
        except Exception:
            ended.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    queue.wake()
    assert ended.wait(10)  # not the minute of its timeout
    waiter.join()
    queue.put((1, "left in the queue"))
    assert queue.get_nowait() == (1, "left in the queue")  # what a stop requeues is still there
