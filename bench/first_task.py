"""The first task after a start, against the ones after it.

    python bench/first_task.py [--settle 3] [--tasks 10]

Starts `python -m app --agent` (embedded, default settings) with the test
suite's fake LLM answering at once, waits until it answers /health and then
`settle` seconds more (a server usually idles a while before its first task),
and runs one quick task, then `tasks` more one at a time. Prints, for the
first and as the median of the others, the gap between a task's
`created_at` and its `started_at`, and the whole time from submit to its
final status. What the first task pays alone is what the process had left
to do after it said it was ready. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
import systems  # noqa: E402

from storage import parse_ts  # noqa: E402  (systems.py puts the project on the path)


def one(client: httpx.Client, url: str) -> tuple[float, float]:
    """(submit -> started, submit -> final) of one quick task, in ms."""
    began = time.perf_counter()
    task_id = load.submit(client, url)
    load.wait_final(client, url, task_id)
    total = (time.perf_counter() - began) * 1000
    state = client.get(f"{url}/tasks/{task_id}/result").json()
    return (parse_ts(state["started_at"]) - parse_ts(state["created_at"])).total_seconds() * 1000, total


def measure(settle_s: float, tasks: int) -> dict:
    with systems.fake_llm() as llm, tempfile.TemporaryDirectory(prefix="aipy-bench-") as tmp:
        with systems.ours(llm, Path(tmp)) as (url, _), httpx.Client(timeout=30) as client:
            time.sleep(settle_s)  # the idle time before a first task is the condition measured
            first = one(client, url)
            later = [one(client, url) for _ in range(tasks)]
    return {
        "first_start_ms": round(first[0], 1), "first_total_ms": round(first[1], 1),
        "later_start_ms": round(statistics.median(start for start, _ in later), 1),
        "later_total_ms": round(statistics.median(total for _, total in later), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--tasks", type=int, default=10)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.settle, args.tasks)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
