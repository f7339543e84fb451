"""Bounded retries with exponential backoff for transient LLM failures.

The SDKs' own retries are switched off (max_retries=0) so that this is the one
place that decides: a fixed number of tries, waits that a cancel can cut
short, and no retry at all for errors that another try cannot fix (a bad key,
a bad request).
"""

from __future__ import annotations

import random
import threading
from typing import Callable, TypeVar

from .base import Aborted, LLMError

T = TypeVar("T")

#: No single wait grows beyond this, however many retries are configured.
MAX_BACKOFF_S = 30.0


def call_with_retries(
    call: Callable[[], T],
    *,
    retries: int,
    backoff_s: float,
    abort: threading.Event,
    on_retry: Callable[[int, LLMError, float], None] | None = None,
) -> T:
    """Run `call`; on a retryable LLMError wait and try again, `retries` times.

    Waits double from `backoff_s` (with up to 10 % jitter so that many tasks
    hitting one rate limit do not retry in lockstep). Raises the last error
    when the tries run out, and Aborted when `abort` is set during a wait.
    """
    attempt = 0
    while True:
        try:
            return call()
        except LLMError as exc:
            if not exc.retryable or attempt >= retries:
                raise
            delay = min(MAX_BACKOFF_S, backoff_s * (2**attempt))
            delay *= 1 + random.uniform(0, 0.1)
            attempt += 1
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            if abort.wait(delay):
                raise Aborted() from exc
