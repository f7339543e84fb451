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
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications

#: Redis broker tuning. With Dramatiq's defaults a dead worker's messages come
#: back only after minutes (60 s heartbeat, then a 1 % chance of maintenance
#: per fetch); these bring it within the 60 s the service promises.
HEARTBEAT_TIMEOUT_MS = 15_000
MAINTENANCE_CHANCE = 10_000  # out of 100,000 fetches: 10 %

#: Timeouts for the Redis connection, so a dead Redis answers 503 quickly
#: rather than hanging a request thread.
REDIS_SOCKET_TIMEOUT_S = 5
REDIS_CONNECT_TIMEOUT_S = 2


def middleware() -> list:
    # Order matters only in that Retries must see failures after the others.
    return [AgeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(), Retries(max_retries=0)]


def make_broker(redis_url: str | None) -> dramatiq.Broker:
    """The Redis broker for `redis_url`, or the embedded one when None."""
    if not redis_url:
        return StubBroker(middleware=middleware())
    import redis
    from dramatiq.brokers.redis import RedisBroker

    # Options passed beside url= are dropped by RedisBroker, so the client is
    # built here with its timeouts and handed over whole.
    client = redis.Redis.from_url(
        redis_url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        health_check_interval=30,
    )
    return RedisBroker(
        client=client,
        middleware=middleware(),
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
