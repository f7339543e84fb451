"""Measure the executor's overhead over a bare interpreter start.

Usage: python bench/engine_overhead.py [--runs N]

Every code block the agent runs pays this overhead, so it must stay small
relative to simply starting Python. The two measurements are interleaved so
both see the same machine noise, and medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.executor import Executor  # noqa: E402

TARGET_RATIO = 1.3


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="measurements of each kind")
    args = parser.parse_args(argv)

    executor = Executor()
    with tempfile.TemporaryDirectory(prefix="aipy-bench-") as tmp:
        workspace = Path(tmp)

        def run_executor() -> None:
            result = executor.run("python", "pass", workspace)
            if result.status != "success":
                raise SystemExit(f"executor run failed: {result.output}")

        def run_bare() -> None:
            subprocess.run([sys.executable, "-c", "pass"], check=True)

        run_executor(), run_bare()  # warm up caches on both sides
        exec_times, bare_times = [], []
        for i in range(args.runs):
            # Alternate which goes first so neither always follows the other.
            if i % 2:
                exec_times.append(_timed(run_executor))
                bare_times.append(_timed(run_bare))
            else:
                bare_times.append(_timed(run_bare))
                exec_times.append(_timed(run_executor))

    exec_ms = statistics.median(exec_times) * 1000
    bare_ms = statistics.median(bare_times) * 1000
    ratio = exec_ms / bare_ms
    print(f"runs: {args.runs}")
    print(f"executor median: {exec_ms:.2f} ms")
    print(f"bare     median: {bare_ms:.2f} ms")
    print(f"ratio (executor / bare): {ratio:.3f}")
    print(f"target: <= {TARGET_RATIO}  ->  {'MET' if ratio <= TARGET_RATIO else 'NOT MET'}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
