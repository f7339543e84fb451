"""Many clients submitting at once: errors, lost tasks, memory, in one run.

    python bench/submit_load.py [--tasks 2000] [--clients 32]

Starts the whole service in embedded mode (`python -m app --agent`, its data
in a temporary folder, its LLM a fake one on loopback that answers at once),
then `--clients` threads submit `--tasks` tasks over keep-alive connections
as fast as they can. It prints the submit rate, the requests that failed,
the tasks accepted but lost (never finished once the queue drained), and the
server's RSS before and after. Only what was measured is printed; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_llm import FakeLLM, Reply  # noqa: E402
from tests.polling import wait_until  # noqa: E402
from tests.redis_server import free_port  # noqa: E402


#: With no task finishing for this long, the ones still unfinished are lost.
STALL_S = 30.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=payload, headers={"Content-Type": "application/json"} if payload else {})
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def healthy(port: int) -> bool:
    """Whether GET /health answers 200 on loopback at `port`."""
    try:
        return request(http.client.HTTPConnection("127.0.0.1", port, timeout=5), "GET", "/health")[0] == 200
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()

    with FakeLLM() as llm, tempfile.TemporaryDirectory() as data:
        llm.responder = lambda body: Reply("Done.")
        port = free_port()
        env = {**os.environ, "AIPYTHON_DATA_DIR": data, "AIPYTHON_LLM_BASE_URL": llm.openai_base_url,
               "AIPYTHON_LLM_API_KEY": "bench", "AIPYTHON_LLM_MODEL": "fake-bench", "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen([sys.executable, "-m", "app", "--agent", "--port", str(port)], env=env,
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            try:
                wait_until(lambda: healthy(port), timeout=60, what="the server to answer /health", every=0.1)
            except AssertionError as exc:
                print(f"the server did not start: {exc}", file=sys.stderr)
                return 1
            rss_before = rss_mb(server.pid)
            accepted: list[str] = []
            errors: list[str] = []
            lock = threading.Lock()
            share = [args.tasks // args.clients + (i < args.tasks % args.clients) for i in range(args.clients)]

            def client(count: int) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                for _ in range(count):
                    try:
                        status, body = request(conn, "POST", "/tasks", {"instruction": "load"})
                    except (OSError, http.client.HTTPException, ValueError) as exc:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                        with lock:
                            errors.append(type(exc).__name__)
                        continue
                    with lock:
                        (accepted.append(body["task_id"]) if status == 200 else errors.append(str(status)))

            threads = [threading.Thread(target=client, args=(n,)) for n in share]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started

            # Lost = accepted but never finished: wait while the queue drains
            # (any progress within STALL_S keeps waiting).
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            pending = set(accepted)
            last_progress = time.monotonic()
            while pending and time.monotonic() - last_progress < STALL_S:
                for task_id in list(pending):
                    status, body = request(conn, "GET", f"/tasks/{task_id}")
                    if status == 200 and body["status"] in ("completed", "error", "cancelled"):
                        pending.discard(task_id)
                        last_progress = time.monotonic()
                time.sleep(0.2)
            drained = time.monotonic() - started
            rss_after = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(30)

    print(f"tasks submitted: {args.tasks} from {args.clients} clients in {elapsed:.2f} s "
          f"({args.tasks / elapsed:.0f} submits/s)")
    print(f"errors: {len(errors)} {sorted(set(errors)) if errors else ''}")
    print(f"accepted: {len(accepted)}; all finished {drained:.1f} s after the first submit; "
          f"lost (never finished, no progress for {STALL_S:g} s): {len(pending)}")
    print(f"server RSS: {rss_before:.1f} MB before, {rss_after:.1f} MB after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
