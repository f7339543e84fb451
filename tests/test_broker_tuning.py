"""The Redis broker's tuning against the promise that a dead worker's task
is final within 60 s (tests/test_crash.py measures it with real processes):
Dramatiq requeues a dead worker's messages only during maintenance, which
runs on `maintenance_chance` out of MAINTENANCE_SCALE commands."""

from __future__ import annotations

from dramatiq.brokers.redis import MAINTENANCE_SCALE

from actors.broker import HEARTBEAT_TIMEOUT_MS, MAINTENANCE_CHANCE, make_broker
from config.settings import Settings

PROMISE_S = 60
#: Left for the message, once requeued, to be fetched and its task ended.
RERUN_S = 5
#: The slowest polling the tuning must tolerate: an idle worker fetches from
#: each queue once every queue_idle_wake_ms, whose largest allowed value is this.
SLOWEST_POLL_S = next(rule.le for rule in Settings.model_fields["queue_idle_wake_ms"].metadata
                      if hasattr(rule, "le")) / 1000


def test_maintenance_runs_within_the_promise_even_with_slow_polling():
    window_s = PROMISE_S - HEARTBEAT_TIMEOUT_MS / 1000 - RERUN_S
    fetches = int(window_s / SLOWEST_POLL_S)
    chance = MAINTENANCE_CHANCE / MAINTENANCE_SCALE
    assert (1 - chance) ** fetches < 1e-3


def test_the_redis_broker_is_built_with_the_tuning():
    broker = make_broker("redis://127.0.0.1:6379/0")  # builds the client; connects only when used
    try:
        assert broker.heartbeat_timeout == HEARTBEAT_TIMEOUT_MS
        assert broker.maintenance_chance == MAINTENANCE_CHANCE
    finally:
        broker.close()
