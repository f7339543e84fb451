"""The one way the tests wait for a state they cannot be told about.

A poll waits for a state to be reached (a task finished, a file written, a
process gone); it never proves order or absence by sleeping. A test that
asserts "nothing happened" waits on something deterministic first (a
worker's or broker's `join()`, a later event in the log) instead.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], *, timeout: float = 10.0, what: str = "the condition",
               every: float = 0.02) -> T:
    """Call `check()` every `every` seconds (default 0.02) until it returns
    something truthy, and return that value. After `timeout` seconds (default
    10) fail with an AssertionError that names `what` and the last value
    `check()` returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last seen: {value!r}")
        time.sleep(every)
