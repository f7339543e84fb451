"""Measure what a Python block costs beyond its own run time, with a kernel
per task and with a fresh interpreter per block.

Usage: python bench/kernel_overhead.py [--blocks N] [--sandbox TIER] [--python PATH]

One task session per mode runs N blocks (default 40) through the real
executor and sandbox tier. Each block times its own code and prints that;
its overhead is the time `ExecSession.run` took minus that. The first block
(which starts the kernel) is left out: the target is the p50 of the second
and later blocks, <= 5 ms in kernel mode. The modes take turns block by
block, so both see the same machine noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import EngineSettings, ExecLimits, Executor  # noqa: E402

TARGET_MS = 5.0

#: A block that times its own code (a small computation) and prints it.
BLOCK = "import time as _t\n_s = _t.perf_counter()\ntotal = sum(range(10000))\nprint(_t.perf_counter() - _s)\n"

MODES = ("kernel", "fresh")


def overhead_ms(session, code: str = BLOCK) -> float:
    started = time.perf_counter()
    result = session.run("python", code)
    wall = time.perf_counter() - started
    if result.status != "success":
        raise SystemExit(f"block failed: {result.output}")
    return (wall - float(result.stdout.split()[-1])) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=40, help="blocks per mode, the first left out")
    parser.add_argument("--sandbox", default="auto", choices=("auto", "bubblewrap", "process"))
    parser.add_argument("--python", help="the blocks' interpreter (the process tier as root needs one all "
                                         "users can run, e.g. /usr/bin/python3)")
    args = parser.parse_args(argv)

    executors = {mode: Executor(ExecLimits.from_settings(EngineSettings(sandbox=args.sandbox, python=args.python,
                                                                        python_state=mode)))
                 for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="aipy-bench-") as tmp, ExitStack() as stack:
        os.chmod(tmp, 0o711)  # the sandbox uids pass through to their workspaces, as a data folder allows
        sessions = {mode: stack.enter_context(executors[mode].session(Path(tmp) / mode)) for mode in MODES}
        for mode in MODES:
            overhead_ms(sessions[mode])  # the first block: the kernel starts
        for i in range(args.blocks - 1):
            for mode in (MODES if i % 2 else MODES[::-1]):
                times[mode].append(overhead_ms(sessions[mode]))

    p50 = {mode: statistics.median(times[mode]) for mode in MODES}
    print(f"sandbox: {executors['kernel'].sandbox.tier}; blocks per mode: {args.blocks} (first left out)")
    for mode in MODES:
        print(f"{mode:6} p50 overhead per block: {p50[mode]:7.2f} ms")
    print(f"ratio (fresh / kernel): {p50['fresh'] / p50['kernel']:.1f}x")
    met = p50["kernel"] <= TARGET_MS
    print(f"target: kernel <= {TARGET_MS:g} ms  ->  {'MET' if met else 'NOT MET'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
