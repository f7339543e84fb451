"""The peer's request rates (aipyapp 0.5.0 agent mode, FastAPI on uvicorn).

    python bench/peer_throughput.py [--seconds 5] [--connections 32]

Loads the peer's `GET /tasks/{id}` (one finished task) and `POST /tasks`
with wrk, keep-alive, the same client settings api_throughput.py uses for
ours; each submitted task runs against the fake LLM (the peer has no way to
only queue them). Needs wrk and the peer (see systems.py); says why not
otherwise. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
import probes  # noqa: E402
import systems  # noqa: E402

POST_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"instruction": "benchmark task", "metadata": {"source": "bench"}}'
wrk.headers["Content-Type"] = "application/json"
"""


def measure(seconds: float = 5, connections: int = 32) -> dict:
    if shutil.which("wrk") is None:
        return {"note": "not run: wrk is not installed"}
    if not systems.peer_installed():
        return {"note": f"not installed ({systems.PEER_PYTHON} missing)"}
    with systems.fake_llm() as llm, tempfile.TemporaryDirectory(prefix="aipy-bench-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(POST_SCRIPT)
        with systems.peer(llm, Path(tmp)) as (url, _):
            with httpx.Client(timeout=30) as client:
                task_id = load.submit(client, url)
                load.wait_final(client, url, task_id)
            probes.wrk(f"{url}/tasks/{task_id}", 1, connections)  # warm up
            get_rps = probes.wrk(f"{url}/tasks/{task_id}", seconds, connections).rps
            post_rps = probes.wrk(f"{url}/tasks", seconds, connections, script).rps
    return {"get_rps": get_rps, "post_rps": post_rps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.seconds, args.connections)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
