"""Quick one-block tasks, ours against the peer (aipyapp 0.5.0 agent mode).

    python bench/quick_tasks.py [--runs 15] [--batch 40]

Both servers run as processes with default settings but one: ours runs 4
worker threads, the peer's own cap, not its default 8 (embedded mode, the
sandbox on, warm kernels as by default); their LLM the same fake server answering
at once: one Python block, then "Done." Measures, per system:
- one task from submit to final status, polled every 10 ms (median of
  `runs`, after a warm-up task); target: ours <= 0.6x the peer's;
- `batch` tasks submitted at once, tasks/s until the last is final;
  target: ours >= 3x the peer's.
The systems run one after the other, on one fake LLM. The peer is
skipped, saying so, where it is not installed (see systems.py). Prints one
JSON line; asserts nothing.
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


def _measure(url: str, runs: int, tasks: int) -> dict:
    seconds, completed = load.batch(url, tasks)
    return {"one_task_ms": load.median_one_task(url, runs) * 1000, "batch_tasks_per_s": tasks / seconds,
            "batch_completed": completed}


def measure(runs: int = 15, tasks: int = 40) -> dict:
    """{"ours": {...}, "peer": {...} or None, "peer_note": why not}."""
    out: dict = {"ours": None, "peer": None, "peer_note": ""}
    with systems.fake_llm() as llm, tempfile.TemporaryDirectory(prefix="aipy-bench-") as tmp:
        with systems.ours(llm, Path(tmp), workers=4) as (url, _):
            out["ours"] = _measure(url, runs, tasks)
        if not systems.peer_installed():
            out["peer_note"] = f"not installed ({systems.PEER_PYTHON} missing)"
            return out
        try:
            with systems.peer(llm, Path(tmp)) as (url, _):
                out["peer"] = _measure(url, runs, tasks)
        except Exception as exc:  # the peer is someone else's program: say why it was not measured
            out["peer_note"] = f"not run: {exc}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=40)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.runs, args.batch)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
