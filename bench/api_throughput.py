"""HTTP throughput of the API against a bare Falcon route, in one run.

    python bench/api_throughput.py [--seconds 5] [--connections 32] [--threads 16] [--repeats 3]

Starts, side by side on loopback, each under waitress with the same thread
count: a bare Falcon app whose one route returns constant JSON, and the
service's app in embedded mode (its store in a temporary folder, logging as
`python -m app --agent` sets it up, no worker threads, so submitted tasks only
queue and no LLM is ever asked). Loads them with wrk, keep-alive, in
interleaved rounds (bare, status, submit; `--repeats` times) so a noisy
machine skews all three alike, and prints requests per second, the server's
CPU time per request, and the median ratios the design targets:

    POST /tasks          >= 0.5 x the bare route
    GET  /tasks/{id}     >= 0.9 x the bare route

waitress's "Task queue depth" warnings (every thread busy, which 32
connections on 16 threads always are) are silenced in both servers alike.
wrk (Debian's package `wrk`) generates the load, so the client is not the
bottleneck; without it the script says so and stops. Only measured numbers
are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import probes  # noqa: E402  (beside this script)
from tests.polling import wait_until  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402

BARE_APP = textwrap.dedent("""
    import falcon, logging, sys
    from waitress import serve

    logging.getLogger("waitress.queue").disabled = True

    class Constant:
        def on_get(self, req, resp):
            resp.media = {"status": "ok", "name": "bare"}

    app = falcon.App()
    app.add_route("/", Constant())
    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
""")

SERVICE_APP = textwrap.dedent("""
    import logging, sys
    from waitress import serve
    from actors import setup_logging
    from actors.system import TaskSystem
    from app.factory import create_app
    from config import load_config

    config = load_config(overrides={"data_dir": sys.argv[3]})
    setup_logging(config.settings.debug)
    logging.getLogger("waitress.queue").disabled = True
    system = TaskSystem(config)
    serve(create_app(system), host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
""")

POST_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"instruction": "benchmark task", "metadata": {"source": "bench"}}'
wrk.headers["Content-Type"] = "application/json"
"""


def start(code: str, threads: int, *extra: str, extra_env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Run `code` as a server on a free port; its process and URL once it
    accepts connections (within 20 s); `extra_env` is added to its
    environment. Its output is dropped (the service logs every submit, as
    in production)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in [n for n in env if n.startswith("AIPYTHON_") or n == "REDIS_URL"]:
        del env[name]
    process = subprocess.Popen([sys.executable, "-c", code, str(port), str(threads), *extra], env={**env, **(extra_env or {})}, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    try:
        wait_until(listening, timeout=20, what="the server to listen", every=0.1)
    except AssertionError as exc:
        process.kill()
        sys.exit(f"server did not start: {exc}")
    return process, f"http://127.0.0.1:{port}"


def wrk(url: str, seconds: float, connections: int, script: str | None = None) -> tuple[float, int]:
    """(requests per second, requests made) of one wrk run on `url`; exits
    when any answer was an error, since the numbers would mean nothing."""
    run = probes.wrk(url, seconds, connections, script)
    if run.errors:
        sys.exit(f"{url}: {run.errors} error responses; the numbers would mean nothing")
    return run.rps, run.made


def measure(process: subprocess.Popen, url: str, args: argparse.Namespace, script: str | None = None) -> tuple[float, float]:
    """(requests per second, the server's CPU microseconds per request)."""
    before = probes.cpu_seconds(process.pid)
    rps, made = wrk(url, args.seconds, args.connections, script)
    return rps, (probes.cpu_seconds(process.pid) - before) * 1e6 / max(made, 1)


def seed_task(url: str) -> str:
    request = urllib.request.Request(f"{url}/tasks", data=b'{"instruction": "seed"}',
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)["task_id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=16, help="waitress threads, the same for both apps")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the medians are reported")
    parser.add_argument("--no-redis", dest="redis", action="store_false",
                        help="skip Redis mode (the web process alone; measured when redis-server is installed)")
    parser.add_argument("--data-dir", help="a folder for the service's store (default: a temporary one; "
                                           "its file system's cost of creating files is part of every submit)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk): it generates the load")

    rounds: list[dict[str, tuple[float, float]]] = []
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        post_lua = Path(scratch, "post.lua")
        post_lua.write_text(POST_SCRIPT)
        data = Path(tempfile.mkdtemp(dir=args.data_dir) if args.data_dir else Path(scratch, "data"))
        if args.data_dir:
            stack.callback(shutil.rmtree, data, ignore_errors=True)
        servers = {"bare": serve(stack, BARE_APP, args.threads)}
        servers["service"] = serve(stack, SERVICE_APP, args.threads, str(data))
        if args.redis and shutil.which("redis-server"):
            redis = RedisServer(scratch)
            stack.callback(redis.stop)
            # The web process alone: it stores tasks and sends them to Redis; no worker runs them.
            servers["redis"] = serve(stack, SERVICE_APP, args.threads, str(Path(scratch, "redis-data")),
                                     extra_env={"REDIS_URL": redis.url})
        targets = {"bare": (servers["bare"], servers["bare"][1] + "/", None)}
        for name, prefix in (("service", ""), ("redis", "redis_")):
            if name in servers:
                url = servers[name][1]
                targets[prefix + "get"] = (servers[name], f"{url}/tasks/{seed_task(url)}", None)
                targets[prefix + "post"] = (servers[name], f"{url}/tasks", str(post_lua))
        for _, url, script in targets.values():
            if script is None:
                wrk(url, 1, args.connections)  # warm up
        for _ in range(args.repeats):
            rounds.append({name: measure(server[0], url, args, script)
                           for name, (server, url, script) in targets.items()})
    report(rounds, args)


def serve(stack: contextlib.ExitStack, code: str, threads: int, *extra: str,
          extra_env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`start`, the server stopped when `stack` closes."""
    process, url = start(code, threads, *extra, extra_env=extra_env)

    def stop() -> None:
        process.terminate()
        process.wait()

    stack.callback(stop)
    return process, url


def report(rounds: list[dict[str, tuple[float, float]]], args: argparse.Namespace) -> None:
    """Each round, then the medians and the median ratios (a ratio is taken
    within its round), and last the same as one JSON line (bench/run_all.py)."""
    print(f"waitress threads: {args.threads}, wrk connections: {args.connections}, "
          f"{args.seconds:g} s per run, {len(rounds)} interleaved round(s)")
    for number, got in enumerate(rounds, 1):
        print(f"round {number}: " + ", ".join(
            f"{name} {rps:.0f} req/s ({cpu:.0f} us CPU/req)" for name, (rps, cpu) in got.items()))
    summary: dict[str, float] = {}
    for name in rounds[0]:
        summary[f"{name}_rps"] = round(statistics.median(got[name][0] for got in rounds))
        summary[f"{name}_cpu_us"] = round(statistics.median(got[name][1] for got in rounds))
        if name != "bare":
            summary[f"{name}_ratio"] = round(statistics.median(got[name][0] / got["bare"][0] for got in rounds), 3)
    print(f"bare Falcon constant JSON : {summary['bare_rps']:9.0f} req/s (median)")
    labels = {"get": ("GET  /tasks/{id}", 0.9), "post": ("POST /tasks", 0.5),
              "redis_get": ("GET  /tasks/{id}, Redis mode", 0.8), "redis_post": ("POST /tasks, Redis mode", 0.4)}
    for name, (label, target) in labels.items():
        if f"{name}_rps" in summary:
            print(f"{label:<30}: {summary[name + '_rps']:9.0f} req/s   ratio {summary[name + '_ratio']:.2f}"
                  f"  (target >= {target})")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
