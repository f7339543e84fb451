"""Which tasks the broker still holds a message for: the reconciler's view of
the queue (see reconciler.py), for Redis and for the embedded broker.

A message is *held* from the moment it is enqueued until a worker acks it
(the task ran) or nacks it (the actor raised: it is dead-lettered). Only a
task with no held message can have lost it.

Over Redis, Dramatiq keeps a queue Q under its namespace N ("dramatiq") as
(see dramatiq/brokers/redis/dispatch.lua, the one place that changes them):

    N:Q                      list: ids of the messages waiting
    N:Q.msgs                 hash: id -> message, from enqueue to ack or nack
    N:__acks__.<worker>.Q    set: ids a worker fetched and has not acked yet
    N:__heartbeats__         sorted set: every worker that has an ack set
    N:Q.DQ, N:Q.DQ.msgs, N:__acks__.<worker>.Q.DQ
                             the same for delayed messages (until their eta a
                             worker holds them, then it enqueues them on Q)
    N:Q.XQ.msgs              hash: dead-lettered messages (kept 7 days)

A message is held when its id is in the list or in a worker's ack set (a dead
worker's set goes back to the list at the next maintenance) and its data is
in the `.msgs` hash: an id without data is skipped by the worker that fetches
it. Dramatiq moves ids between the list and the ack sets (fetch, requeue at
shutdown, maintenance), so two separate reads could see an id in neither:
everything is read by one Lua script, atomically, as dispatch.lua writes it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import DecodeError
from dramatiq.message import Message
from dramatiq.middleware import Middleware

log = logging.getLogger("aipy.queue")

#: KEYS[1]: the namespace; ARGV: the queues to read (Q, then Q.DQ), then the
#: dead-letter queue (Q.XQ). Returns {held messages, dead-lettered messages}.
HELD_MESSAGES_LUA = """
local namespace = KEYS[1]
local workers = redis.call("zrange", namespace .. ":__heartbeats__", 0, -1)
local held = {}
for i = 1, #ARGV - 1 do
    local queue = namespace .. ":" .. ARGV[i]
    local ids = redis.call("lrange", queue, 0, -1)
    for _, worker in ipairs(workers) do
        for _, id in ipairs(redis.call("smembers", namespace .. ":__acks__." .. worker .. "." .. ARGV[i])) do
            table.insert(ids, id)
        end
    end
    for _, id in ipairs(ids) do
        local data = redis.call("hget", queue .. ".msgs", id)
        if data then
            table.insert(held, data)
        end
    end
end
local dead = redis.call("hvals", namespace .. ":" .. ARGV[#ARGV] .. ".msgs")
return {held, dead}
"""


@dataclass(frozen=True)
class Held:
    """The tasks the broker holds a message for: `queued` (waiting, delayed
    or being run) and `dead` (dead-lettered: delivered, and the actor
    raised; sending it again would only repeat that)."""

    queued: frozenset[str]
    dead: frozenset[str]


def _task_ids(payloads, actor_name: str) -> frozenset[str]:
    """The task ids of the `actor_name` messages among `payloads`: encoded
    messages (from Redis) or messages (from memory)."""
    ids = set()
    for data in payloads:
        try:
            message = Message.decode(data) if isinstance(data, (bytes, str)) else data
        except DecodeError:
            log.warning("A message in the queue cannot be decoded; ignored")
            continue
        if message.actor_name == actor_name and message.args:
            ids.add(str(message.args[0]))
    return frozenset(ids)


class RedisQueueView:
    """The task actor's messages in Redis, read in one atomic step, and
    claims that let one reconciler, in any process, re-send a task."""

    #: Claims live beside Dramatiq's keys, under a prefix of our own.
    CLAIM_PREFIX = "aipy:requeue:"

    def __init__(self, actor: dramatiq.Actor):
        self.broker = actor.broker
        self.actor_name = actor.actor_name
        self.queues = [actor.queue_name, dq_name(actor.queue_name), xq_name(actor.queue_name)]
        self._script = self.broker.client.register_script(HELD_MESSAGES_LUA)
        self._owner = str(uuid.uuid4())

    def held(self) -> Held:
        """Raises redis-py's errors when Redis cannot be reached."""
        held, dead = self._script(keys=[self.broker.namespace], args=self.queues)
        return Held(_task_ids(held, self.actor_name), _task_ids(dead, self.actor_name))

    def claim(self, task_id: str, ttl_s: float) -> bool:
        """True for the one caller that may re-send `task_id` within the
        next `ttl_s`: a clock and a starting worker may look at once."""
        key = self.CLAIM_PREFIX + task_id
        return bool(self.broker.client.set(key, self._owner, nx=True, px=max(1, int(ttl_s * 1000))))


class LocalClaims:
    """`RedisQueueView.claim` for one process: a claim per task id that
    expires after its ttl."""

    def __init__(self):
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, task_id: str, ttl_s: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._until.get(task_id, 0.0) > now:
                return False
            self._until = {key: until for key, until in self._until.items() if until > now}
            self._until[task_id] = now + ttl_s
            return True


class OutstandingMessages(Middleware):
    """The embedded broker's equivalent of Redis's `.msgs` hashes: every
    message enqueued in this process and not yet acked or nacked, wherever
    it is (the broker's queue, a worker's prefetch, a worker thread).

    The stub broker's own queues are not enough: a worker takes messages out
    of them long before it runs them (it prefetches twice its threads), so a
    task waiting behind long ones would look lost. Counts are per message id
    because a delayed message is enqueued twice (on Q.DQ, then on Q) and
    acked twice. It must be on the broker before anything is sent
    (`make_broker` puts it there; `attach` seeds a late one from the queues).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._held: dict[str, Message] = {}
        #: Re-send claims, kept with the broker they are about, so every
        #: reconciler of this process (worker start, schedule) shares them.
        self.claims = LocalClaims()

    @classmethod
    def attach(cls, broker: StubBroker) -> "OutstandingMessages":
        """The broker's tracker, added (and seeded with what its queues
        hold) if it has none yet. Messages a worker took before then are
        unknown to it: attach before any worker starts."""
        for middleware in broker.middleware:
            if isinstance(middleware, cls):
                return middleware
        tracker = cls()
        broker.add_middleware(tracker)
        for queue in list(broker.queues.values()):
            with queue.mutex:
                waiting = list(queue.queue)
            for data in waiting:
                try:
                    tracker._add(Message.decode(data))
                except DecodeError:
                    continue
        return tracker

    def _add(self, message: Message) -> None:
        with self._lock:
            self._counts[message.message_id] += 1
            self._held[message.message_id] = message

    def after_enqueue(self, broker, message, delay):
        self._add(message)

    def after_ack(self, broker, message):
        self._settle(message)

    def after_nack(self, broker, message):
        self._settle(message)

    def _settle(self, message) -> None:
        with self._lock:
            self._counts[message.message_id] -= 1
            if self._counts[message.message_id] > 0:
                return
            del self._counts[message.message_id]
            self._held.pop(message.message_id, None)

    def messages(self) -> list[Message]:
        """The messages enqueued and not yet acked or nacked."""
        with self._lock:
            return list(self._held.values())


class StubQueueView:
    """The task actor's messages in the embedded broker, and claims within
    this process (the only one that can send to it)."""

    def __init__(self, actor: dramatiq.Actor):
        self.broker = actor.broker
        self.actor_name = actor.actor_name
        self.queue_name = actor.queue_name
        self.tracker = OutstandingMessages.attach(actor.broker)

    def held(self) -> Held:
        # The stub broker keeps what it dead-lettered itself, per queue.
        dead = list(self.broker.dead_letters_by_queue.get(self.queue_name, []))
        return Held(_task_ids(self.tracker.messages(), self.actor_name), _task_ids(dead, self.actor_name))

    def claim(self, task_id: str, ttl_s: float) -> bool:
        return self.tracker.claims.claim(task_id, ttl_s)


def queue_view(actor: dramatiq.Actor) -> RedisQueueView | StubQueueView:
    """The view that fits the actor's broker."""
    if isinstance(actor.broker, StubBroker):
        return StubQueueView(actor)
    return RedisQueueView(actor)
