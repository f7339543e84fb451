"""HTTP throughput of the API against a bare Falcon route, in one run.

    python bench/api_throughput.py [--seconds 5] [--connections 16] [--threads 8]

Starts, one after the other on loopback, each under waitress with the same
thread count: a bare Falcon app whose one route returns constant JSON, and
the service's app in embedded mode (its store in a temporary folder, no
worker threads, so submitted tasks only queue). Loads each with wrk and prints
requests per second and the ratios the design targets:

    POST /tasks          >= 0.5 x the bare route
    GET  /tasks/{id}     >= 0.9 x the bare route

wrk (Debian's package `wrk`) generates the load, so the client is not the
bottleneck; without it the script says so and stops. Only measured numbers
are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.polling import wait_until  # noqa: E402
from tests.redis_server import free_port  # noqa: E402

BARE_APP = textwrap.dedent("""
    import falcon, sys
    from waitress import serve

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
    from actors.system import TaskSystem
    from app.factory import create_app
    from config import load_config

    logging.disable(logging.INFO)
    config = load_config(overrides={"data_dir": sys.argv[3]})
    system = TaskSystem(config)
    serve(create_app(system), host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
""")

POST_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"instruction": "benchmark task", "metadata": {"source": "bench"}}'
wrk.headers["Content-Type"] = "application/json"
"""


def start(code: str, threads: int, *extra: str) -> tuple[subprocess.Popen, str]:
    """Run `code` as a server on a free port; its process and URL once it
    accepts connections (within 20 s)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in [n for n in env if n.startswith("AIPYTHON_") or n == "REDIS_URL"]:
        del env[name]
    process = subprocess.Popen([sys.executable, "-c", code, str(port), str(threads), *extra], env=env, cwd=ROOT)

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


def wrk(url: str, seconds: float, connections: int, script: str | None = None) -> float:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", url]
    if script:
        command[1:1] = ["-s", script]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        sys.exit(f"{url}: {errors.group(1)} error responses; the numbers would mean nothing")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8, help="waitress threads, the same for both apps")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk): it generates the load")

    with tempfile.TemporaryDirectory() as scratch:
        post_lua = Path(scratch, "post.lua")
        post_lua.write_text(POST_SCRIPT)

        bare, bare_url = start(BARE_APP, args.threads)
        try:
            wrk(bare_url + "/", 1, args.connections)  # warm up
            bare_rps = wrk(bare_url + "/", args.seconds, args.connections)
        finally:
            bare.terminate()
            bare.wait()

        service, url = start(SERVICE_APP, args.threads, str(Path(scratch, "data")))
        try:
            import json
            import urllib.request

            request = urllib.request.Request(f"{url}/tasks", data=b'{"instruction": "seed"}',
                                             headers={"Content-Type": "application/json"})
            task_id = json.load(urllib.request.urlopen(request))["task_id"]
            wrk(f"{url}/tasks/{task_id}", 1, args.connections)  # warm up
            get_rps = wrk(f"{url}/tasks/{task_id}", args.seconds, args.connections)
            post_rps = wrk(f"{url}/tasks", args.seconds, args.connections, str(post_lua))
        finally:
            service.terminate()
            service.wait()

    print(f"waitress threads: {args.threads}, wrk connections: {args.connections}, {args.seconds:g} s each")
    print(f"bare Falcon constant JSON : {bare_rps:9.0f} req/s")
    print(f"GET  /tasks/{{id}}          : {get_rps:9.0f} req/s   ratio {get_rps / bare_rps:.2f}  (target >= 0.9)")
    print(f"POST /tasks               : {post_rps:9.0f} req/s   ratio {post_rps / bare_rps:.2f}  (target >= 0.5)")


if __name__ == "__main__":
    main()
