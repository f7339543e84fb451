"""Time from a task's submit to its `task_start` event, in one run.

    python bench/submit_latency.py [--tasks 50]

Runs the whole system in this process behind waitress on loopback, with the
test suite's fake LLM answering at once, first in embedded mode and then over
a redis-server it starts itself (skipped, saying so, without the binary).
Submits tasks one at a time over HTTP and reads, for each, the gap between
its `created_at` and the timestamp of its `task_start` event. Prints the
median and the worst next to the design's targets (p50 <= 10 ms embedded,
<= 25 ms over Redis); asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.live_server import LiveServer, app_config  # noqa: E402
from tests.fake_llm import FakeLLM, Reply  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from storage import parse_ts  # noqa: E402

TARGETS_MS = {"embedded": 10, "redis": 25}


def measure(server: LiveServer, tasks: int) -> list[float]:
    server.wait_for(server.submit("warm up"))  # the first task pays for imports
    gaps = []
    for _ in range(tasks):
        task_id = server.submit("bench")
        server.wait_for(task_id)
        start = server.store.read_events(task_id)[0]
        created = server.store.get(task_id)["created_at"]
        gaps.append((parse_ts(start["timestamp"]) - parse_ts(created)).total_seconds() * 1000)
        time.sleep(0.05)  # idle between tasks, as a worker usually is
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with FakeLLM() as llm:
        llm.responder = lambda body: Reply("Done.")
        for mode in ("embedded", "redis"):
            scratch = Path(tempfile.mkdtemp(prefix="aipy-bench-"))
            redis = None
            settings = {}
            if mode == "redis":
                if shutil.which("redis-server") is None:
                    print("redis: skipped (no redis-server)")
                    continue
                redis = RedisServer(scratch)
                settings["redis_url"] = redis.url
            server = LiveServer(app_config(scratch, llm, **settings))
            try:
                gaps = measure(server, args.tasks)
            finally:
                server.stop()
                if redis is not None:
                    redis.stop()
                shutil.rmtree(scratch, ignore_errors=True)
            print(f"{mode:9s} submit -> task_start: p50 {statistics.median(gaps):6.1f} ms, "
                  f"max {max(gaps):6.1f} ms   (target p50 <= {TARGETS_MS[mode]} ms)")


if __name__ == "__main__":
    main()
