"""Broker selection: Dramatiq's Redis broker when REDIS_URL is set, otherwise
an embedded in-process broker whose worker threads live in the server.

The middleware list is written out rather than taken from Dramatiq's
defaults, because two defaults are wrong for agent tasks:
- TimeLimit (10 min) would try to interrupt long tasks with an async
  exception that cannot break a blocking call; the engine enforces each
  task's own time limit cooperatively instead.
- Retries (20 by default) would re-run a task whose code already had side
  effects; a task runs once.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Callbacks, CurrentMessage, Pipelines, Retries, ShutdownNotifications

from .queue_view import OutstandingMessages
from .redis_link import RedisLink
from .wakeups import DELAYED_POLL_MS, EmbeddedBroker, NotifyingRedisBroker

#: Redis broker tuning. A dead worker's unacknowledged messages go back to
#: their queue only during "maintenance", which Dramatiq runs on a random
#: `maintenance_chance` out of 1,000,000 broker commands (its
#: MAINTENANCE_SCALE; ack and nack never trigger it), and only for the queue
#: that command named and for workers silent past `heartbeat_timeout`. With
#: the defaults (60 s, 1,000 = 0.1 %) that takes minutes. The service
#: promises 60 s: 15 s until the worker counts as dead leaves about 40 s
#: (allowing for the re-run that ends the task) for maintenance to fire on
#: the `tasks` queue. An idle worker fetches from each queue once every
#: `queue_idle_wake_ms` (default 1 s, at most 2 s): at 30 % a run, 20 fetches
#: in 40 s all miss with odds of 0.7**20, under 1 in 1,000. A run with no
#: dead worker costs Redis two small sorted-set range reads.
HEARTBEAT_TIMEOUT_MS = 15_000
MAINTENANCE_CHANCE = 300_000  # out of 1,000,000 commands: 30 %

#: Timeouts for the Redis connection, so a dead Redis answers 503 quickly
#: rather than hanging a request thread.
REDIS_SOCKET_TIMEOUT_S = 5
REDIS_CONNECT_TIMEOUT_S = 2


def middleware() -> list:
    # Order matters only in that Retries must see failures after the others.
    # CurrentMessage lets the runner record which message started a task, so
    # a duplicate message cannot end it (runner.py), and lets a callback
    # attempt read its number from the message's retries (callbacks.py).
    # Retries makes no retry by default; the callback actor sets its own.
    return [AgeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(), CurrentMessage(), Retries(max_retries=0)]


def make_broker(redis_url: str | None, *, delayed_poll_ms: int = DELAYED_POLL_MS) -> dramatiq.Broker:
    """The Redis broker for `redis_url`, or the embedded one when None. Both
    wake their idle consumers when a message is sent (wakeups.py); a
    consumer holding delayed messages looks every `delayed_poll_ms`
    (default 20)."""
    if not redis_url:
        # The embedded queue's record of the messages not yet acked, which
        # the reconciler reads as Redis's `.msgs` hashes (queue_view.py).
        return EmbeddedBroker(middleware=[*middleware(), OutstandingMessages()], delayed_poll_ms=delayed_poll_ms)
    import redis

    # Options passed beside url= are dropped by RedisBroker, so the client is
    # built here with its timeouts and handed over whole.
    client = redis.Redis.from_url(
        redis_url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        health_check_interval=30,
    )
    return NotifyingRedisBroker(
        client=client,
        link=RedisLink(client, redis_url),
        middleware=middleware(),
        delayed_poll_ms=delayed_poll_ms,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
    )


def is_embedded(broker: dramatiq.Broker) -> bool:
    return isinstance(broker, StubBroker)


def ping(broker: dramatiq.Broker) -> None:
    """Raise if the broker cannot be reached (the embedded one always can)."""
    client = getattr(broker, "client", None)
    if client is not None:
        client.ping()
