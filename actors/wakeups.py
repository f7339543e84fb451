"""Idle without polling: queue consumers that sleep until there is work.

Dramatiq's consumers look at their queue every `worker_timeout` while idle,
and a new message waits for the next look; keeping that wait short (the
submit -> start latency) meant some 50 looks a second per queue, which an
idle server and worker paid for in CPU and, over Redis, in commands. Here a
consumer blocks until a message is sent, and looks on its own only every
`worker_timeout` (the setting queue_idle_wake_ms, default 1 s), which is
also how soon it notices a stop:

- Embedded: the in-memory queue's `get()` already wakes the moment a
  message is put, so the consumer only needs a long timeout.
- Redis: `send()` publishes the queue's name on `<namespace>:__wake__`
  after the message is stored; one subscriber thread per worker process
  sets the event its consumer waits on. A notice is a hint, not the
  message: one lost (the subscriber reconnecting, a publish that failed) is
  made good by the next look, at most `worker_timeout` later, and Redis's
  own list stays the only record of what is queued.

Either way, a consumer of a delay queue that holds delayed messages (a
callback's retry waiting for its time) looks every `delayed_poll_ms`
(the setting queue_poll_ms, default 20), because Dramatiq moves a delayed
message to its queue only when the consumer comes back from a look.

The consumers extend Dramatiq 2's own (`_StubConsumer`, `_RedisConsumer`),
whose names are private: tests/test_wakeups.py checks them on an upgrade.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Optional

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.brokers.stub import StubBroker, _StubConsumer
from dramatiq.common import dq_name
from dramatiq.errors import BrokerConnectionError, QueueNotFound
from dramatiq.message import Message

from .redis_link import RedisLink

log = logging.getLogger("aipy.broker")

#: Default for how often a consumer holding a delayed message looks (ms).
DELAYED_POLL_MS = 20


def _is_delay_queue(queue_name: str) -> bool:
    return dq_name(queue_name) == queue_name


class EmbeddedBroker(StubBroker):
    """The in-memory broker, with consumers that block while idle and look
    every `delayed_poll_ms` (default 20) only while holding delayed messages."""

    def __init__(self, middleware: Optional[list] = None, *, delayed_poll_ms: int = DELAYED_POLL_MS):
        super().__init__(middleware)
        self.delayed_poll_ms = delayed_poll_ms

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 1000) -> _StubConsumer:
        """A consumer that waits up to `timeout` ms for a message."""
        try:
            queue = self.queues[queue_name]
        except KeyError:
            raise QueueNotFound(queue_name) from None
        return _EmbeddedConsumer(queue, self.dead_letters_by_queue[queue_name], prefetch, timeout,
                                 delayed=_is_delay_queue(queue_name), delayed_poll_ms=self.delayed_poll_ms)


class _EmbeddedConsumer(_StubConsumer):
    def __init__(self, queue, dead_letters, prefetch: int, timeout: int, *, delayed: bool, delayed_poll_ms: int):
        super().__init__(queue, dead_letters, prefetch, timeout)
        self.idle_ms = timeout
        self.delayed = delayed
        self.delayed_poll_ms = delayed_poll_ms
        # Delayed messages handed out and not yet moved on. Only a delay
        # queue counts them, and there the consumer's own thread both takes
        # and acks them, so no lock is needed.
        self.holding = 0

    def __next__(self):
        self.timeout = self.delayed_poll_ms if self.holding else self.idle_ms
        message = super().__next__()
        if message is not None and self.delayed:
            self.holding += 1
        return message

    def ack(self, message) -> None:
        super().ack(message)
        self._release()

    def nack(self, message) -> None:
        super().nack(message)
        self._release()

    def _release(self) -> None:
        if self.delayed:
            self.holding = max(0, self.holding - 1)


class Waker:
    """Wake-up notices over Redis pub/sub: `notify(queue)` publishes, and a
    subscriber thread (started by the first `event()`, so only processes
    that consume run one) sets that queue's event. `listen_s` (default 1)
    is how long the subscriber waits on its socket at a time, and so how
    soon it sees `stop()`; keep it under the client's socket timeout."""

    def __init__(self, client: redis.Redis, channel: str, *, listen_s: float = 1.0):
        self.client = client
        self.channel = channel
        self.listen_s = listen_s
        # Each consumer waits on an event of its own (a second consumer of
        # the same queue clearing a shared one could swallow a notice);
        # dropped with the consumer.
        self.events: dict[str, weakref.WeakSet[threading.Event]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self, queue_name: str) -> None:
        """Tell the consumers of `queue_name` a message is there. Never
        raises: the message is stored already, and a missed notice only
        delays it until its consumer's next look."""
        try:
            self.client.publish(self.channel, queue_name)
        except redis.RedisError as exc:
            log.debug("Wake-up notice for %s not sent: %s", queue_name, exc)

    def event(self, queue_name: str) -> threading.Event:
        """A new event, set whenever a notice for `queue_name` arrives (and
        when this waker stops); the caller keeps it alive."""
        event = threading.Event()
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._listen, name="queue-waker", daemon=True)
                self._thread.start()
            self.events.setdefault(queue_name, weakref.WeakSet()).add(event)
        return event

    def stop(self) -> None:
        self._stopping.set()
        self._wake_all()

    def listeners(self) -> int:
        """How many processes listen for notices now: one subscriber per
        process that consumes (a worker, or a server running tasks), so the
        count of worker processes connected to this Redis. Raises redis-py's
        errors when Redis cannot be asked."""
        [(_, count)] = self.client.pubsub_numsub(self.channel)
        return int(count)

    def _wake_all(self) -> None:
        with self._lock:
            events = [event for waiting in self.events.values() for event in waiting]
        for event in events:
            event.set()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                # Whatever was sent while no one listened: look now.
                self._wake_all()
                while not self._stopping.is_set():
                    notice = pubsub.get_message(timeout=self.listen_s)
                    if notice is not None:
                        self._wake(notice["data"])
            except (redis.RedisError, OSError) as exc:
                log.debug("Wake-up subscriber lost Redis (%s); consumers look on their own meanwhile", exc)
                self._stopping.wait(1.0)
            finally:
                pubsub.close()

    def _wake(self, data: bytes | str) -> None:
        name = data.decode() if isinstance(data, bytes) else data
        with self._lock:
            events = list(self.events.get(name, ()))
        for event in events:
            event.set()


class NotifyingRedisBroker(RedisBroker):
    """Dramatiq's Redis broker whose `enqueue` also publishes a wake-up
    notice, and whose consumers wait for one instead of polling;
    `delayed_poll_ms` (default 20) as for the embedded broker. While `link`
    finds Redis unreachable its consumers wait for it (redis_link.py)."""

    def __init__(self, *, link: RedisLink, delayed_poll_ms: int = DELAYED_POLL_MS, **options):
        super().__init__(**options)
        self.delayed_poll_ms = delayed_poll_ms
        self.link = link
        self.waker = Waker(self.client, f"{self.namespace}:__wake__")

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 1000) -> _RedisConsumer:
        """A consumer that waits up to `timeout` ms for a notice between looks."""
        return _WaitingRedisConsumer(self, queue_name, prefetch, timeout)

    def enqueue(self, message: Message, *, delay: Optional[int] = None) -> Message:
        sent = super().enqueue(message, delay=delay)
        self.waker.notify(sent.queue_name)
        return sent

    def close(self) -> None:
        self.link.close()
        self.waker.stop()
        super().close()


class _WaitingRedisConsumer(_RedisConsumer):
    def __init__(self, broker: NotifyingRedisBroker, queue_name: str, prefetch: int, timeout: int):
        # Dramatiq's own miss sleeps up to `timeout`; 0 makes a miss return at
        # once, and the wait happens in __next__ below, on the notice.
        super().__init__(broker, queue_name, prefetch, 0)
        self.idle_s = timeout / 1000
        self.delayed_s = broker.delayed_poll_ms / 1000 if _is_delay_queue(queue_name) else None
        self.wake = broker.waker.event(queue_name)

    def __next__(self):
        link = self.broker.link
        if not link.up.is_set():
            # Redis is unreachable and the link is retrying: wait for it
            # rather than let Dramatiq log and restart this consumer every
            # 3 s; returning now and then lets the thread see a stop.
            link.up.wait(self.idle_s)
            return None
        # Cleared before the look, so a notice that arrives after the look
        # found nothing ends the wait below at once.
        self.wake.clear()
        try:
            message = super().__next__()
        except (BrokerConnectionError, redis.TimeoutError):
            link.lost()
            return None
        if message is None:
            holding = self.delayed_s is not None and self.outstanding_message_count > 0
            self.wake.wait(self.delayed_s if holding else self.idle_s)
        return message

    def ack(self, message) -> None:
        try:
            super().ack(message)
        finally:
            self.wake.set()  # a prefetch slot is free: fetch what waits behind it

    def nack(self, message) -> None:
        try:
            super().nack(message)
        finally:
            self.wake.set()
