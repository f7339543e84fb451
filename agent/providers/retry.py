"""The retry policy for LLM calls: bounded tries, exponential waits with
jitter, waits that a cancel cuts short, built on tenacity.

The SDKs' own retries are switched off (max_retries=0) so that this is the one
place that decides: a fixed number of tries, and no retry at all for errors
that another try cannot fix (a bad key, a bad request).
"""

from __future__ import annotations

import random
import threading
from typing import Callable

import tenacity

from .base import Aborted, LLMError

#: No single wait grows beyond this (before jitter), however many retries
#: are configured.
MAX_BACKOFF_S = 30.0

#: Each wait is stretched by up to this share, so that many tasks hitting one
#: rate limit do not retry in lockstep.
JITTER = 0.1


def llm_retrying(
    *,
    retries: int,
    backoff_s: float,
    abort: threading.Event,
    on_retry: Callable[[int, LLMError, float], None] | None = None,
) -> tenacity.Retrying:
    """A `Retrying` that calls its function up to `retries` + 1 times while
    it raises a retryable LLMError.

    Waits double from `backoff_s` up to MAX_BACKOFF_S (30 s), each stretched
    by up to 10 %; `on_retry(attempt, error, wait_s)` (default: none) hears
    of each retry before its wait. Raises the last error when the tries run
    out, any other error at once, and Aborted when `abort` is set during a
    wait.
    """
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, LLMError) and exc.retryable),
        stop=tenacity.stop_after_attempt(retries + 1),
        wait=_jittered(tenacity.wait_exponential(multiplier=backoff_s, max=MAX_BACKOFF_S)),
        sleep=_abortable_sleep(abort),
        before_sleep=None if on_retry is None else _announce(on_retry),
        reraise=True,
    )


def _jittered(wait: Callable[[tenacity.RetryCallState], float]) -> Callable[[tenacity.RetryCallState], float]:
    # Proportional, not added: tenacity's wait_random would add the same few
    # hundred ms to a 1 s wait and to a 30 s one.
    return lambda state: wait(state) * (1 + random.uniform(0, JITTER))


def _abortable_sleep(abort: threading.Event) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        if abort.wait(seconds):
            raise Aborted()

    return sleep


def _announce(on_retry: Callable[[int, LLMError, float], None]) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception()  # type: ignore[union-attr]
        on_retry(state.attempt_number, error, state.upcoming_sleep)  # type: ignore[arg-type]

    return before_sleep
