"""Waiting for Redis: one line when it cannot be reached, retries with
backoff, and one line when it answers.

Left alone, each of Dramatiq's queue consumers logs a CRITICAL line and
restarts every 3 s for as long as Redis is down (six consumers: two lines a
second), and a web process says nothing until a submit fails. Here a process
finds Redis unreachable at start (`check`, `connect`) or a consumer finds it
gone while running (`lost`); then one thread pings it, with tenacity's
exponential backoff (FIRST_WAIT_S, 0.5 s, doubling up to MAX_WAIT_S, 30 s),
while the consumers wait for `up` (wakeups.py) without touching Redis.

One outage writes: a WARNING at the first failed try, naming the URL (its
password hidden), what is retried and what waits; an INFO when the wait
reaches its longest, and every REMIND_S (10 min) after that; an INFO when
Redis answers. Each try is a DEBUG line.
"""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

log = logging.getLogger("aipy.redis")

FIRST_WAIT_S = 0.5
MAX_WAIT_S = 30.0
REMIND_S = 600.0

#: Anything Redis answers with while it cannot serve (refused, reset, a
#: password it refuses, "LOADING" after a restart) or no answer in time.
UNREACHABLE = (redis.RedisError, OSError)

HIDDEN = "***"


def redacted_url(url: str) -> str:
    """`url` with its password hidden: the password of the user part, a user
    part with no password (some hosts put the password there), and any
    query parameter whose name holds "password"."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{HIDDEN}@{host}" if colon else f"{HIDDEN}@{host}"
    query = urlencode([(name, HIDDEN if "password" in name.lower() else value)
                       for name, value in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    # Put together by hand: urlunsplit drops the "//" of an empty host (unix:///run/redis.sock).
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


class RedisLink:
    """Whether Redis answers, as this process last found, and the one thread
    that tries again while it does not. `up` is set while Redis is taken to
    answer: from the start until a check or a consumer finds otherwise.
    `first_wait_s`, `max_wait_s` and `remind_s` default to the constants above."""

    def __init__(self, client: redis.Redis, url: str, *, first_wait_s: float = FIRST_WAIT_S,
                 max_wait_s: float = MAX_WAIT_S, remind_s: float = REMIND_S):
        self.client = client
        self.where = redacted_url(url)
        self.first_wait_s = first_wait_s
        self.max_wait_s = max_wait_s
        self.remind_s = remind_s
        self.up = threading.Event()
        self.up.set()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._retrying: threading.Thread | None = None

    def check(self, waiting: str) -> bool:
        """Ping Redis once: True when it answers; otherwise `lost(waiting)`
        and False."""
        try:
            self.client.ping()
        except UNREACHABLE:
            self.lost(waiting)
            return False
        return True

    def lost(self, waiting: str = "this process's task consumers wait for it") -> None:
        """Redis stopped answering: clear `up` and retry in one background
        thread until it answers or the link is closed. `waiting` is what the
        first log line says waits meanwhile; later callers add nothing."""
        with self._lock:
            if self._retrying is not None or self._closing.is_set():
                return
            self.up.clear()
            self._retrying = threading.Thread(target=self._retry, args=(waiting,), name="redis-reconnect",
                                              daemon=True)
            self._retrying.start()

    def _retry(self, waiting: str) -> None:
        try:
            self.connect(self._closing, waiting)
        finally:
            with self._lock:
                self._retrying = None

    def connect(self, stop: threading.Event, waiting: str) -> bool:
        """Ping until Redis answers (True, and `up` is set) or `stop` is set
        (False), with backoff between tries, in the calling thread."""
        outage = _OutageLog(self, waiting)
        retrying = Retrying(
            retry=retry_if_exception_type(UNREACHABLE),
            wait=wait_exponential(multiplier=self.first_wait_s, max=self.max_wait_s),
            stop=stop_when_event_set(stop),
            sleep=stop.wait,  # a stop ends the wait at once
            before_sleep=outage.failed,
            retry_error_callback=lambda state: False,
        )
        if not retrying(self.client.ping):
            return False
        self.up.set()
        outage.ended()
        return True

    def close(self) -> None:
        """Stop retrying (the retry thread ends within its current try)."""
        self._closing.set()


class _OutageLog:
    """The few lines one outage writes (see the module's docstring)."""

    def __init__(self, link: RedisLink, waiting: str):
        self.link = link
        self.waiting = waiting
        self.since: float | None = None
        self.logged_at = 0.0
        self.at_longest = False

    def failed(self, state: RetryCallState) -> None:
        link, now = self.link, time.monotonic()
        reason = state.outcome.exception() if state.outcome else "no answer"
        wait = state.next_action.sleep if state.next_action else 0.0
        log.debug("Redis at %s: try %d failed (%s); next in %.1f s", link.where, state.attempt_number, reason, wait)
        if self.since is None:
            self.since = self.logged_at = now
            log.warning("Redis at %s is unreachable (%s); retrying the connection, waiting %g s doubling up to %g s "
                        "between tries; %s", link.where, reason, link.first_wait_s, link.max_wait_s, self.waiting)
        elif wait >= link.max_wait_s and not self.at_longest:
            self.at_longest, self.logged_at = True, now
            log.info("Redis at %s is still unreachable after %.0f s; trying every %g s", link.where,
                     now - self.since, link.max_wait_s)
        elif now - self.logged_at >= link.remind_s:
            self.logged_at = now
            log.info("Redis at %s is still unreachable after %.0f min (%s)", link.where, (now - self.since) / 60,
                     reason)

    def ended(self) -> None:
        if self.since is not None:
            log.info("Redis at %s answers, after %.1f s unreachable", self.link.where, time.monotonic() - self.since)
