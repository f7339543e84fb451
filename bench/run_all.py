"""Every figure of the speed targets, in one run, as one table.

    python bench/run_all.py [--quick] [--only NAME ...]

Runs each benchmark script in its own process, one after the other (they
share a 2-core machine badly), reads its figures (bench/outputs.py) and
prints a Markdown table: figure | ours | baseline | peer | ratio | target |
met. The peer (aipyapp 0.5.0) columns are filled where it is installed (see
systems.py) and say why not otherwise; a script that fails or is missing
leaves its rows "not measured" with the reason, and the run goes on.
`--quick` uses fewer tasks and shorter windows (minutes, not a quarter of an
hour); its figures are noisier. Asserts nothing; exits 0.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import outputs  # noqa: E402
from table import Row, machine, render  # noqa: E402


def run(script: str, *args: str, timeout: float = 1800) -> tuple[str | None, str]:
    """(stdout, "") of `python bench/<script> *args`, or (None, why not)."""
    path = BENCH / script
    if not path.exists():
        return None, f"{script} does not exist yet"
    try:
        done = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=timeout,
                              cwd=BENCH.parent)
    except subprocess.TimeoutExpired:
        return None, f"{script} took over {timeout:g} s"
    if done.returncode == 2 and args:  # argparse refused an option (renamed by its owner?): run with defaults
        return run(script, timeout=timeout)
    if done.returncode not in (0, 1):  # kernel_overhead.py exits 1 when its target is missed
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{script} failed: {tail[:160]}"
    return done.stdout, ""


def api_rows(quick: bool) -> list[Row]:
    text, why = run("api_throughput.py", *(["--seconds", "2"] if quick else []))
    ours = outputs.api_throughput(text or "")
    peer, _ = run("peer_throughput.py", *(["--seconds", "2"] if quick else []))
    peer_numbers = outputs.last_json(peer or "") or {}
    note = why or ("" if ours["bare"] else "figures not found in api_throughput.py's output")
    rows = []
    for label, key, redis_key, target, redis_target in (
            ("Submit `POST /tasks`, req/s", "post", "redis_post", 0.5, 0.4),
            ("Status `GET /tasks/{id}`, req/s", "get", "redis_get", 0.9, 0.8)):
        peer_value = peer_numbers.get(f"{key}_rps", peer_numbers.get("note", "not run"))
        rows.append(Row(f"{label}, embedded, vs bare Falcon", ours[key], ours["bare"], peer_value,
                        ">=", target, "x", note=note))
        rows.append(Row(f"{label}, Redis mode (web alone), vs bare Falcon", ours[redis_key], ours["bare"], "",
                        ">=", redis_target, "x", note=note or "api_throughput.py printed no Redis figure"))
    return rows


def quick_rows(quick: bool) -> list[Row]:
    text, why = run("quick_tasks.py", *(["--runs", "7"] if quick else []))
    numbers = outputs.last_json(text or "") or {}
    ours, peer = numbers.get("ours") or {}, numbers.get("peer") or {}
    missing = numbers.get("peer_note") or "not run"
    return [
        Row("Quick one-block task, submit -> final (10 ms polls), ms", ours.get("one_task_ms"), None,
            peer.get("one_task_ms", missing), "<=", 0.6, "x the peer", note=why),
        Row("40 quick tasks at once, tasks/s", ours.get("batch_tasks_per_s"), None,
            peer.get("batch_tasks_per_s", missing), ">=", 3, "x the peer", note=why),
    ]


def io_rows(quick: bool) -> list[Row]:
    text, why = run("io_bound.py", *(["--tasks", "128"] if quick else []))
    numbers = outputs.last_json(text or "") or {}
    return [Row("IO-bound (200 ms LLM replies, 2 rounds), 64 concurrent, tasks/s vs ideal",
                numbers.get("tasks_per_s"), numbers.get("ideal_tasks_per_s"), "", ">=", 0.8, "of ideal",
                note=why)]


def idle_rows(quick: bool) -> list[Row]:
    text, why = run("idle_cpu.py", *(["--settle", "4", "--window", "10"] if quick else []))
    numbers = outputs.idle_cpu(text or "")
    why = why or ("" if any(numbers.values()) else "figures not found in idle_cpu.py's output")
    return [Row("Idle server (embedded), % of a core", numbers["server"], None, "", "<=", 0.2, "%", note=why),
            Row("Idle Redis-mode worker, % of a core", numbers["worker"], None, "", "<=", 0.5, "%", note=why)]


def latency_rows(quick: bool) -> list[Row]:
    text, why = run("submit_latency.py", "--tasks", "20" if quick else "50")
    numbers = outputs.submit_latency(text or "")
    return [Row("Submit -> task_start p50, embedded, ms", numbers["embedded"], None, "", "<=", 10, "ms", note=why),
            Row("Submit -> task_start p50, Redis, ms", numbers["redis"], None, "", "<=", 25, "ms", note=why)]


def memory_rows(quick: bool) -> list[Row]:
    sizes = ["--small", "200", "--large", "2000", "--on-disk", "20000"] if quick else []
    text, why = run("memory_growth.py", *sizes)
    numbers = outputs.last_json(text or "") or {}
    growth, disk = numbers.get("growth") or {}, numbers.get("on_disk") or {}
    small, large, tasks = growth.get("small", 1000), growth.get("large", 10000), disk.get("tasks", 100000)
    return [Row(f"Server RSS after {large:,} finished tasks vs after {small:,}, MB", growth.get("rss_large_mb"),
                growth.get("rss_small_mb"), "", "<=", 1.2, "x", note=why),
            Row(f"Server RSS with {tasks:,} finished tasks on disk, MB", disk.get("rss_mb"), None, "",
                "<=", 150, "MB", note=why)]


def scale_rows(quick: bool) -> list[Row]:
    text, why = run("scale_out.py", *(["--tasks", "40"] if quick else []))
    numbers = outputs.last_json(text or "") or {}
    return [Row("Scale-out over Redis: 2 worker processes vs 1, quick tasks/s",
                numbers.get("two_processes_tasks_per_s"), numbers.get("one_process_tasks_per_s"), "",
                ">=", 1.8, "x", note=why or numbers.get("note", ""))]


def kernel_rows(quick: bool) -> list[Row]:
    text, why = run("kernel_overhead.py", "--blocks", "20" if quick else "40")
    return [Row("Kernel: second and later blocks, p50 overhead, ms", outputs.kernel_overhead(text or ""), None, "",
                "<=", 5, "ms", note=why)]


SECTIONS = {"api": api_rows, "quick": quick_rows, "io": io_rows, "idle": idle_rows, "latency": latency_rows,
            "memory": memory_rows, "scale": scale_rows, "kernel": kernel_rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks, shorter windows")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="run only these sections")
    args = parser.parse_args(argv)
    started = time.time()
    rows: list[Row] = []
    for name, section in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(section(args.quick))
    print(f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}"
          f"{' (--quick)' if args.quick else ''}, {time.time() - started:.0f} s; {machine()}; "
          f"Python {platform.python_version()}\n")
    print(render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
