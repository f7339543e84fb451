"""Scale-out over Redis: quick tasks with two worker processes against one.

    python bench/scale_out.py [--tasks 80] [--workers 4]

For 1 and then 2 worker processes (each `workers` threads, default 4): a
private redis-server, our web process and the workers, the fake LLM
answering at once (one quick block, then "Done."). Submits `tasks` at once
and reports tasks/s until the last is final; target: two processes >= 1.8x
one. Needs redis-server (skipped, saying so, without it). Prints one JSON
line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
import systems  # noqa: E402


def _tasks_per_s(processes: int, tasks: int, workers: int) -> float:
    with systems.fake_llm() as llm, tempfile.TemporaryDirectory(prefix="aipy-bench-") as tmp:
        with systems.ours_redis(llm, Path(tmp), processes, workers) as (url, _):
            load.batch(url, 2 * processes)  # warm up every worker process
            seconds, _ = load.batch(url, tasks)
    return tasks / seconds


def measure(tasks: int = 80, workers: int = 4) -> dict:
    if shutil.which("redis-server") is None:
        return {"note": "not measured: redis-server is not installed"}
    one = _tasks_per_s(1, tasks, workers)
    two = _tasks_per_s(2, tasks, workers)
    return {"one_process_tasks_per_s": one, "two_processes_tasks_per_s": two, "ratio": two / one}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=80)
    parser.add_argument("--workers", type=int, default=4, help="worker threads per process")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.tasks, args.workers)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
