"""Measure the task store with many finished tasks on disk.

Usage: python bench/store_scale.py [--tasks N] [--pages P] [--keep DIR]

Creates N finished tasks (default 100,000) in a temp dir — written directly
with the store's own helpers, as the service would have left them, with an
uncompacted index journal (pending, running, completed records per task) —
then, in a fresh process (as after a restart), measures: opening the store
and loading its index, listing a page, reading one task (compared with a
store of 100 tasks), the process's memory, and deleting every task. Prints
each number next to its design target; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import TaskStore  # noqa: E402
from storage import files  # noqa: E402
from storage.index import INDEX_NAME, record_of  # noqa: E402
from storage.states import advance, end_content, new_state  # noqa: E402
from storage.times import format_ts  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _make_task(root: Path, n: int) -> bytes:
    """One finished task: its state folder and its workspace; returns its
    index journal lines."""
    task_id = str(uuid.UUID(int=random.getrandbits(128), version=4))
    created = START + timedelta(seconds=n)
    state = new_state(task_id, f"benchmark task {n}: count the lines of every .txt file",
                      format_ts(created), {"source": "bench"}, {}, None)
    journal = [record_of(state)]
    advance(state, "running", format_ts(created + timedelta(milliseconds=5)), context={"llm": "fake"})
    journal.append(record_of(state))
    advance(state, "completed", format_ts(created + timedelta(seconds=2)))
    journal.append(record_of(state))
    folder = root / "tasks" / task_id
    folder.mkdir(0o700)
    (root / "workspaces" / task_id).mkdir(0o700)
    events = [
        {"seq": 1, "type": "task_start", "timestamp": state["started_at"], "content": {"instruction": state["instruction"]}},
        {"seq": 2, "type": "task_end", "timestamp": state["completed_at"], "content": end_content("completed")},
    ]
    (folder / "events.jsonl").write_bytes(b"".join(files.dumps(e) + b"\n" for e in events))
    (folder / "task.json").write_bytes(files.dumps(state))
    return b"".join(files.dumps(r) + b"\n" for r in journal)


def populate(root: Path, count: int) -> None:
    # An empty store first: the folders, their modes and the layout version,
    # so the measured open is that of a store already in today's layout.
    TaskStore(root).close()
    with ThreadPoolExecutor(8) as pool:
        journal = list(pool.map(lambda n: _make_task(root, n), range(count), chunksize=256))
    (root / "tasks" / INDEX_NAME).write_bytes(b"".join(journal))


def _proc_status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MB. (ru_maxrss would
    include the parent's peak: Linux keeps it across fork and exec.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return _proc_status_mb("VmRSS")


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(big: Path, small: Path, pages: int) -> dict:
    """Runs in a fresh process: the store as a restarted web process sees it."""
    out: dict = {"rss_start_mb": _rss_mb()}
    t0 = time.perf_counter()
    store = TaskStore(big, clock=lambda: START + timedelta(days=3650))
    store.load_index()
    out["open_s"] = time.perf_counter() - t0
    out["rss_loaded_mb"] = _rss_mb()
    out["rss_open_peak_mb"] = _proc_status_mb("VmHWM")
    t0 = time.perf_counter()
    second = TaskStore(big)  # as a second process would, after the first compacted the journal
    second.load_index()
    out["reopen_s"] = time.perf_counter() - t0
    second.close()
    del second
    total = store.list(limit=1)[1]
    offsets = [random.randrange(0, max(total - 100, 1)) for _ in range(pages)]
    it = iter(offsets * 2)
    out["list_ms"] = _median_ms(lambda: store.list(limit=100, offset=next(it)), pages)
    out["list_status_ms"] = _median_ms(lambda: store.list(status="completed", limit=100, offset=next(it)), pages)
    out["list_first_page_ms"] = _median_ms(lambda: store.list(limit=100), pages)
    ids = [t["task_id"] for t in store.list(limit=2000, offset=total // 3)[0]]
    small_store = TaskStore(small)
    small_ids = [t["task_id"] for t in small_store.list()[0]]
    rounds = 2000
    for _ in range(2):  # interleave so both sides see the same noise
        out.setdefault("get_big_ms", []).append(_median_ms(lambda: store.get(random.choice(ids)), rounds))
        out.setdefault("get_small_ms", []).append(_median_ms(lambda: small_store.get(random.choice(small_ids)), rounds))
    out["get_big_ms"], out["get_small_ms"] = min(out["get_big_ms"]), min(out["get_small_ms"])
    out["rss_peak_mb"] = _proc_status_mb("VmHWM")
    t0 = time.perf_counter()
    out["deleted"] = store.delete_finished_older_than(24)
    out["cleanup_s"] = time.perf_counter() - t0
    out["tasks"] = total
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="finished tasks to create")
    parser.add_argument("--pages", type=int, default=200, help="list calls to time")
    parser.add_argument("--measure", nargs=2, metavar=("BIG", "SMALL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), Path(args.measure[1]), args.pages)))
        return 0

    with tempfile.TemporaryDirectory(prefix="aipy-store-bench-") as tmp:
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        t0 = time.perf_counter()
        populate(big, args.tasks)
        populate(small, 100)
        print(f"created {args.tasks:,} finished tasks in {time.perf_counter() - t0:.1f} s")
        subprocess.run(["sync"], check=False)
        proc = subprocess.run([sys.executable, __file__, "--pages", str(args.pages), "--measure", str(big), str(small)],
                              capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        r = json.loads(proc.stdout.strip().splitlines()[-1])

    n = r["tasks"]
    rows = [
        (f"open store + load index ({n:,} tasks, journal)", f"{r['open_s']:.2f} s", "<= 2 s"),
        ("open again (another process)", f"{r['reopen_s']:.2f} s", "<= 2 s"),
        ("list a page of 100, random offset (median)", f"{r['list_ms']:.1f} ms", "<= 50 ms"),
        ("list status=completed, random offset (median)", f"{r['list_status_ms']:.1f} ms", "<= 50 ms"),
        ("list the first page (median)", f"{r['list_first_page_ms']:.1f} ms", "<= 50 ms"),
        (f"get one task at {n:,} (median)", f"{r['get_big_ms'] * 1000:.0f} us", ""),
        ("get one task at 100 (median)", f"{r['get_small_ms'] * 1000:.0f} us", ""),
        ("  ratio", f"{r['get_big_ms'] / r['get_small_ms']:.2f}x", "~1x (as fast as with 100)"),
        (f"cleanup all ({r['deleted']:,} deleted)", f"{r['cleanup_s']:.1f} s", "<= 30 s"),
        ("process RSS at start (python + storage)", f"{r['rss_start_mb']:.0f} MB", ""),
        ("process RSS with the index loaded", f"{r['rss_loaded_mb']:.0f} MB", "web process <= 150 MB"),
        ("process peak RSS while opening", f"{r['rss_open_peak_mb']:.0f} MB", "web process <= 150 MB"),
        ("process peak RSS before cleanup (2 stores open)", f"{r['rss_peak_mb']:.0f} MB", ""),
    ]
    width = max(len(label) for label, _, _ in rows)
    for label, value, target in rows:
        print(f"{label:<{width}}  {value:>10}  {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
