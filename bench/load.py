"""Driving a server that speaks the agent-mode API (ours or the peer's):
submit tasks, poll them to their end, time it.

Polling is one client at a time, every `poll_s` (default 10 ms): a batch is
waited on task by task in submit order, so the poller adds the same small
load (about 100 requests/s) to both systems, however many tasks run.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

FINAL = ("completed", "error", "cancelled", "failed")


def submit(client: httpx.Client, url: str, instruction: str = "print 6 * 7") -> str:
    response = client.post(f"{url}/tasks", json={"instruction": instruction})
    response.raise_for_status()
    return response.json()["task_id"]


def wait_final(client: httpx.Client, url: str, task_id: str, poll_s: float = 0.01, timeout: float = 120) -> str:
    """The task's final status, polling every `poll_s` (default 10 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"{url}/tasks/{task_id}").json()["status"]
        if status in FINAL:
            return status
        time.sleep(poll_s)
    raise TimeoutError(f"task {task_id} not final within {timeout} s")


def one_task(url: str, poll_s: float = 0.01) -> float:
    """Seconds from submit to the task's final status as the poller sees it."""
    with httpx.Client(timeout=30) as client:
        started = time.perf_counter()
        task_id = submit(client, url)
        status = wait_final(client, url, task_id, poll_s)
        elapsed = time.perf_counter() - started
    if status != "completed":
        raise RuntimeError(f"task {task_id} ended {status}")
    return elapsed


def batch(url: str, tasks: int, poll_s: float = 0.01) -> tuple[float, int]:
    """Submit `tasks` at once (16 submitting clients), wait for all to end;
    (seconds from the first submit to the last end, how many completed)."""
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=32)) as client:
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(lambda _: submit(client, url), range(tasks)))
        statuses = [wait_final(client, url, task_id, poll_s, timeout=600) for task_id in ids]
        elapsed = time.perf_counter() - started
    return elapsed, statuses.count("completed")


def median_one_task(url: str, runs: int, poll_s: float = 0.01) -> float:
    """The median of `runs` one-task timings, after one warm-up task."""
    one_task(url, poll_s)
    times = sorted(one_task(url, poll_s) for _ in range(runs))
    return times[len(times) // 2]
