"""What the service costs while nothing happens, in one run.

    python bench/idle_cpu.py [--settle 8] [--window 20]

Starts the embedded server (`python -m app --agent`) and, where a
redis-server binary exists, a private redis-server on a free loopback port
and a Redis-mode worker (`python -m actors.worker`), each with its data in a
scratch folder. After `--settle` seconds it reads each process's CPU time
(utime + stime in /proc/PID/stat) and Redis's `total_commands_processed`,
waits `--window` seconds, reads them again, and prints each one's share of
a core, its thread count and Redis's commands per second next to the
design's targets (idle server <= 0.2 %, idle worker <= 0.5 % of a core).
Asserts nothing; stops what it started by its PID.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import probes  # noqa: E402  (beside this script)
from systems import stop  # noqa: E402
from tests.polling import wait_until  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402

TARGET_SERVER = 0.2  # % of a core
TARGET_WORKER = 0.5


def start(args: list[str], env: dict, name: str) -> subprocess.Popen:
    log = open(env["AIPYTHON_DATA_DIR"] + f"-{name}.log", "wb")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def answering(check) -> Callable[[], bool]:
    """`check` for wait_until, where an exception means "not up yet" (a
    refused connection, a missing key)."""
    def probe() -> bool:
        try:
            return bool(check())
        except Exception:
            return False

    return probe


def service_env(scratch: Path, name: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPYTHON_") and k != "REDIS_URL"}
    data = scratch / name
    env.update(AIPYTHON_DATA_DIR=str(data), **extra)
    return env


def measure(pids: dict[str, int], window: float, redis_client=None) -> dict:
    """CPU share (% of a core) of each pid over `window` seconds, and Redis's
    commands per second (without this function's own two INFO calls)."""
    before = {name: probes.cpu_seconds(pid) for name, pid in pids.items()}
    commands = redis_client.info("stats")["total_commands_processed"] if redis_client else 0
    began = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - began
    shares = {name: (probes.cpu_seconds(pid) - before[name]) / elapsed * 100 for name, pid in pids.items()}
    if redis_client:
        done = redis_client.info("stats")["total_commands_processed"] - commands - 1
        shares["redis_commands_per_s"] = done / elapsed
    return shares


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "NOT met"


def bench_embedded(scratch: Path, settle: float, window: float) -> None:
    port = free_port()
    server = start(["-m", "app", "--agent", "--port", str(port)], service_env(scratch, "embedded"), "embedded")
    try:
        wait_until(answering(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200),
                   timeout=60, what="the embedded server", every=0.2)
        time.sleep(settle)
        share = measure({"server": server.pid}, window)["server"]
        print(f"embedded server idle: {share:5.2f} % of a core, {probes.threads(server.pid)} threads   "
              f"(target <= {TARGET_SERVER} %: {verdict(share, TARGET_SERVER)})")
    finally:
        stop(server)


def bench_redis_worker(scratch: Path, settle: float, window: float) -> None:
    if shutil.which("redis-server") is None:
        print("redis worker idle: skipped (no redis-server)")
        return
    import redis

    redis_server = RedisServer(scratch)
    worker = None
    try:
        client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
        worker = start(["-m", "actors.worker"], service_env(scratch, "redis", REDIS_URL=redis_server.url), "worker")
        wait_until(answering(lambda: client.zcard("dramatiq:__heartbeats__") > 0), timeout=60,
                   what="the worker's first fetch", every=0.2)
        time.sleep(settle)
        shares = measure({"worker": worker.pid, "redis-server": redis_server.process.pid}, window, client)
        print(f"redis worker idle:    {shares['worker']:5.2f} % of a core, {probes.threads(worker.pid)} threads   "
              f"(target <= {TARGET_WORKER} %: {verdict(shares['worker'], TARGET_WORKER)})")
        print(f"  redis-server meanwhile: {shares['redis-server']:5.2f} % of a core, "
              f"{shares['redis_commands_per_s']:.1f} commands/s")
    finally:
        if worker is not None:
            stop(worker)
        redis_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settle", type=float, default=8.0, help="seconds after start before measuring")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="aipy-idle-"))
    try:
        bench_embedded(scratch, args.settle, args.window)
        bench_redis_worker(scratch, args.settle, args.window)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
