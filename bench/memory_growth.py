"""Our server's memory as finished tasks pile up.

    python bench/memory_growth.py [--small 1000] [--large 10000] [--on-disk 100000]

1. Growth: our server in embedded mode (8 worker threads) runs tasks that
   end in one round (the fake LLM answers "Done." at once, so the run is
   about bookkeeping, not code), in chunks of 200, and reads the process's
   RSS after `small` and after `large` finished tasks; target: the second
   <= 1.2x the first.
2. On disk: `on_disk` finished tasks are written into a fresh data folder
   with store_scale.py's helpers, then the server starts on it, answers
   /health and a listing, and its RSS is read; target <= 150 MB.
Prints one JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
import store_scale  # noqa: E402
import systems  # noqa: E402

CHUNK = 200


def _run_tasks(url: str, count: int) -> None:
    for start in range(0, count, CHUNK):
        load.batch(url, min(CHUNK, count - start))


def growth(small: int = 1000, large: int = 10000) -> dict:
    with systems.fake_llm(blocks=False) as llm, tempfile.TemporaryDirectory(prefix="aipy-bench-") as tmp:
        with systems.ours(llm, Path(tmp), workers=8) as (url, process):
            _run_tasks(url, small)
            time.sleep(1)  # let the last tasks' threads settle
            rss_small = systems.rss_mb(process.pid)
            _run_tasks(url, large - small)
            time.sleep(1)
            rss_large = systems.rss_mb(process.pid)
    return {"small": small, "large": large, "rss_small_mb": rss_small, "rss_large_mb": rss_large,
            "ratio": rss_large / rss_small}


def on_disk(tasks: int = 100_000) -> dict:
    with systems.fake_llm() as llm, tempfile.TemporaryDirectory(prefix="aipy-bench-") as tmp:
        store_scale.populate(Path(tmp) / "data", tasks)
        started = time.perf_counter()
        with systems.ours(llm, Path(tmp)) as (url, process):
            ready_s = time.perf_counter() - started
            httpx.get(f"{url}/tasks", params={"limit": 100}, timeout=60).raise_for_status()
            rss = systems.rss_mb(process.pid)
    return {"tasks": tasks, "rss_mb": rss, "ready_s": ready_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--on-disk", type=int, default=100_000)
    args = parser.parse_args(argv)
    print(json.dumps({"growth": growth(args.small, args.large), "on_disk": on_disk(args.on_disk)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
