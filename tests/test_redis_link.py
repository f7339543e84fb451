"""Waiting for Redis (actors/redis_link.py): its URL shown without the
password, one line per outage and a few more only as it drags on, and
consumers that wait for it instead of logging CRITICAL every 3 s."""

from __future__ import annotations

import logging
import threading

import pytest
import redis

from actors.redis_link import RedisLink, redacted_url

from .fake_llm import Reply
from .live_server import LiveServer, app_config
from .polling import wait_until


@pytest.mark.parametrize("url, shown", [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("rediss://default:s3cret@cache.example:6380", "rediss://default:***@cache.example:6380"),
    ("redis://s3cret@127.0.0.1:6379", "redis://***@127.0.0.1:6379"),
    ("redis://127.0.0.1:6379/0?password=s3cret&db=2", "redis://127.0.0.1:6379/0?password=***&db=2"),
    ("unix:///run/redis.sock?password=s3cret", "unix:///run/redis.sock?password=***"),
])
def test_the_url_is_shown_without_its_password(url, shown):
    assert redacted_url(url) == shown


class FlakyRedis:
    """A client whose ping fails `failures` times, then answers."""

    def __init__(self, failures: int):
        self.failures = failures
        self.tries = 0

    def ping(self) -> bool:
        self.tries += 1
        if self.tries <= self.failures:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        return True


def lines(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aipy.redis" and r.levelno == level]


def test_an_outage_is_one_warning_a_line_at_the_longest_wait_and_one_when_it_answers(caplog):
    caplog.set_level(logging.DEBUG, logger="aipy.redis")
    link = RedisLink(FlakyRedis(failures=8), "redis://:s3cret@127.0.0.1:1/0", first_wait_s=0.001, max_wait_s=0.01)
    assert link.connect(threading.Event(), "tasks wait for it")
    assert link.up.is_set()
    [warning] = lines(caplog, logging.WARNING)
    assert warning.startswith("Redis at redis://:***@127.0.0.1:1/0 is unreachable (Error 111")
    assert "doubling up to 0.01 s" in warning and warning.endswith("; tasks wait for it")
    info = lines(caplog, logging.INFO)
    assert len(info) == 2 and "still unreachable" in info[0] and "answers, after" in info[1]
    assert len(lines(caplog, logging.DEBUG)) == 8
    assert "s3cret" not in caplog.text


def test_a_stop_ends_the_retries(caplog):
    link = RedisLink(FlakyRedis(failures=10**9), "redis://127.0.0.1:1/0", first_wait_s=0.001, max_wait_s=0.002)
    stop = threading.Event()
    client = link.client
    threading.Timer(0.05, stop.set).start()
    assert link.connect(stop, "nothing") is False
    assert client.tries >= 2 and len(lines(caplog, logging.WARNING)) == 1


def test_lost_retries_in_one_background_thread_until_redis_answers():
    client = FlakyRedis(failures=3)
    link = RedisLink(client, "redis://127.0.0.1:1/0", first_wait_s=0.001, max_wait_s=0.002)
    for _ in range(5):  # every consumer of the process may find it lost at once
        link.lost()
    assert link.up.wait(10)
    assert client.tries == 4


def test_consumers_wait_for_a_redis_that_went_away_and_run_tasks_once_it_is_back(tmp_path, fake_llm, caplog):
    from .redis_server import RedisServer

    caplog.set_level(logging.DEBUG, logger="aipy.redis")
    first = RedisServer(tmp_path)
    server = LiveServer(app_config(tmp_path, fake_llm, redis_url=first.url))
    again = None
    try:
        first.stop()
        wait_until(lambda: not server.system.redis_link.up.is_set(), what="a consumer to find Redis gone")
        # Four tries (0.5 + 1 + 2 s apart): Dramatiq's six consumers would
        # each have logged CRITICAL and restarted by then.
        wait_until(lambda: "try 4 failed" in caplog.text, timeout=30, what="the fourth try")
        assert len(lines(caplog, logging.WARNING)) == 1
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text

        again = RedisServer(tmp_path, port=first.port)  # back, on the same port
        assert server.system.redis_link.up.wait(30)
        fake_llm.script(Reply("Done."))
        task_id = server.submit("after the outage")
        assert server.wait_for(task_id, timeout=30)["status"] == "completed"
    finally:
        server.stop()
        if again is not None:
            again.stop()
