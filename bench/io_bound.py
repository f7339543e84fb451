"""IO-bound tasks at 64 concurrent: how close to ideal throughput we get.

    python bench/io_bound.py [--tasks 192] [--concurrency 64] [--delay 0.2]

Our server in embedded mode with `concurrency` worker threads; the fake LLM
waits `delay` seconds (default 200 ms) before each reply, and each task has
two rounds (one quick block, then "Done."). Ideal throughput is every worker
always waiting on the LLM: concurrency / (2 x delay) tasks/s (160 at the
defaults). Submits `tasks` at once and reports tasks/s until the last is
final, as a share of ideal; target >= 80 %. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
import systems  # noqa: E402


def measure(tasks: int = 192, concurrency: int = 64, delay_s: float = 0.2) -> dict:
    with systems.fake_llm(delay_s) as llm, tempfile.TemporaryDirectory(prefix="aipy-bench-") as tmp:
        with systems.ours(llm, Path(tmp), workers=concurrency) as (url, _):
            load.one_task(url)  # warm up: imports, the sandbox's first start
            seconds, completed = load.batch(url, tasks)
    ideal = concurrency / (2 * delay_s)
    return {"tasks": tasks, "completed": completed, "tasks_per_s": tasks / seconds, "ideal_tasks_per_s": ideal,
            "share_of_ideal": tasks / seconds / ideal}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=192)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds before each LLM reply")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.tasks, args.concurrency, args.delay)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
