"""Where a quick task's time goes: its phases, from its own events.

    python bench/task_timeline.py [--runs 15] [--pause 0.3]

Runs our server (embedded, default settings, the sandbox on) against the
fake LLM, and one quick task at a time (one Python block, then "Done."),
`pause` seconds apart so that the warm kernels are back in place. For each
phase, the median over `runs` tasks, in ms, from the events' timestamps
(millisecond resolution) and the client's clock:

    submit -> task_start, the first LLM call, the block (exec_start to
    exec_result), the second LLM call, the end (the last llm_response to
    task_end: the kernel's exit, the sweep, the end's record), and the
    poller's lag (task_end until a 10 ms poll sees the final status).

Prints a line per phase, then one JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
import systems  # noqa: E402

from storage import parse_ts  # noqa: E402  (systems.py puts the project on the path)

import httpx  # noqa: E402

PHASES = ("submit_to_start", "first_llm_call", "block", "second_llm_call", "end", "poll_lag", "total")


def timeline(client: httpx.Client, url: str) -> dict[str, float]:
    """One task's phases, in ms."""
    started = time.time()
    task_id = load.submit(client, url)
    load.wait_final(client, url, task_id)
    seen = time.time()
    messages = client.get(f"{url}/tasks/{task_id}/result").json()["output"]["messages"]
    at = {}
    for message in messages:  # the first of each type, but the last llm_response
        key = message["type"]
        if key == "llm_response" and key in at:
            key = "llm_response_2"
        at.setdefault(key, parse_ts(message["timestamp"]).timestamp())
    ms = {
        "submit_to_start": at["task_start"] - started,
        "first_llm_call": at["llm_response"] - at["task_start"],
        "block": at["exec_result"] - at["exec_start"],
        "second_llm_call": at["llm_response_2"] - at["exec_result"],
        "end": at["task_end"] - at["llm_response_2"],
        "poll_lag": seen - at["task_end"],
        "total": seen - started,
    }
    return {name: value * 1000 for name, value in ms.items()}


def measure(runs: int = 15, pause_s: float = 0.3) -> dict[str, float]:
    """The median of each phase over `runs` tasks, in ms."""
    rows = []
    with systems.fake_llm() as llm, tempfile.TemporaryDirectory(prefix="aipy-bench-") as tmp:
        with systems.ours(llm, Path(tmp)) as (url, _), httpx.Client(timeout=30) as client:
            timeline(client, url)  # warm up
            for _ in range(runs):
                time.sleep(pause_s)  # a pause between tasks, not a wait for an outcome
                rows.append(timeline(client, url))
    return {name: round(statistics.median(row[name] for row in rows), 1) for name in PHASES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between tasks")
    args = parser.parse_args(argv)
    medians = measure(args.runs, args.pause)
    for name in PHASES:
        print(f"{name:<16} {medians[name]:7.1f} ms")
    print(json.dumps(medians))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
