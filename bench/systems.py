"""The systems the benchmarks drive: ours and the peer, as real processes.

- `fake_llm(delay_s, blocks)`: the test suite's fake LLM, answering every
  task with one quick Python block and then "Done." (two rounds), in our
  wire format (tool calls) and in the peer's (its marked-up Markdown);
- `ours(llm, scratch, **env)`: `python -m app --agent` in embedded mode (or
  web and worker processes over Redis, see `ours_redis`), configured by
  environment only, its data in `scratch`;
- `peer(llm, scratch)`: aipyapp 0.5.0's agent mode (FastAPI on uvicorn) from
  its own virtualenv, whose interpreter is `$PEER_PYTHON` (default
  ~/.cache/aipyapp-peer/bin/python; docs/benchmarks.md says how to set it
  up), its LLM pointed at the same fake server.

Every process listens on 127.0.0.1 on a free port and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fake_llm import Block, FakeLLM, Reply  # noqa: E402
from tests.live_server import get_json, service_env  # noqa: E402
from tests.polling import wait_until  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402

PEER_PYTHON = Path(os.environ.get("PEER_PYTHON") or Path.home() / ".cache/aipyapp-peer/bin/python")

#: `engine.python` for our servers, when set: the interpreter of the code
#: blocks and kernels (default: the server's own). Each kernel's start is
#: its interpreter's start, site initialisation and all (docs/benchmarks.md).
BLOCK_PYTHON = os.environ.get("BENCH_BLOCK_PYTHON")

#: The model names the two systems ask for: how the fake LLM tells them apart.
OUR_MODEL, PEER_MODEL = "fake-service", "fake-peer"

#: The quick block both systems run.
CODE = "print(6 * 7)"

#: The peer's own format for "run this block" (its Block-Start/End markers and an Exec tool call).
PEER_BLOCK = ('<!-- Block-Start: {"name": "main", "version": 1} -->\n```python\n' + CODE
              + '\n```\n<!-- Block-End: {"name": "main"} -->\n'
              '<!-- ToolCall: {"name": "Exec", "arguments": {"name": "main"}} -->')


def _answer(body: dict, delay_s: float, blocks: bool) -> Reply:
    """First round: one block (none if not `blocks`); later rounds: "Done."
    (a round is one earlier assistant message)."""
    rounds = sum(1 for message in body.get("messages", []) if message.get("role") == "assistant")
    if rounds or not blocks:
        return Reply("Done.", delay_s=delay_s)
    if body.get("model") == PEER_MODEL:
        return Reply(PEER_BLOCK, delay_s=delay_s)
    return Reply(blocks=[Block("python", CODE)], delay_s=delay_s)


@contextlib.contextmanager
def _serving(process: subprocess.Popen, port: int) -> Iterator[tuple[str, subprocess.Popen]]:
    """(URL, process) once the server started as `process` answers on
    `port`; stopped, by its PID, when the block ends."""
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url, process
    finally:
        stop(process)


@contextlib.contextmanager
def fake_llm(delay_s: float = 0.0, blocks: bool = True) -> Iterator[FakeLLM]:
    """The fake LLM, each reply sent after `delay_s` seconds (default 0);
    with `blocks` False every task ends in one round with no block."""
    with FakeLLM() as llm:
        llm.responder = lambda body: _answer(body, delay_s, blocks)
        llm.requests = _Forgetful()
        yield llm


class _Forgetful(list):
    """The fake LLM records every request; thousands of tasks need none of them."""

    def append(self, item) -> None:
        pass


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM by PID, SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _start(argv: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    def up():
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        return get_json(f"{url}/health")
    wait_until(up, timeout=timeout, what=f"{url}/health")


@contextlib.contextmanager
def ours(llm: FakeLLM, scratch: Path, workers: int | None = None, **env: str
         ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Our server in embedded mode with `workers` worker threads (default:
    the service's own default); yields its URL and its process."""
    port = free_port()
    if workers is not None:
        env["AIPYTHON_WORKERS"] = str(workers)
    if BLOCK_PYTHON:
        env.setdefault("AIPYTHON_ENGINE__PYTHON", BLOCK_PYTHON)
    environ = service_env(llm, PORT=str(port), AIPYTHON_DATA_DIR=str(scratch / "data"), **env)
    process = _start([sys.executable, "-m", "app", "--agent", "--port", str(port)], environ, ROOT,
                     scratch / "ours.log")
    with _serving(process, port) as served:
        yield served


@contextlib.contextmanager
def ours_redis(llm: FakeLLM, scratch: Path, worker_processes: int, workers: int = 4
               ) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A redis-server, our web process and `worker_processes` worker
    processes of `workers` threads each; yields the URL and the processes
    (web first)."""
    redis = RedisServer(scratch)
    port = free_port()
    extra = {"AIPYTHON_ENGINE__PYTHON": BLOCK_PYTHON} if BLOCK_PYTHON else {}
    environ = service_env(llm, PORT=str(port), AIPYTHON_DATA_DIR=str(scratch / "data"),
                          AIPYTHON_WORKERS=str(workers), REDIS_URL=redis.url, **extra)
    started = [_start([sys.executable, "-m", "app.serve"], environ, ROOT, scratch / "web.log")]
    try:
        for n in range(worker_processes):
            started.append(_start([sys.executable, "-m", "actors.worker"], environ, ROOT, scratch / f"worker{n}.log"))
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, started[0])
        yield url, started
    finally:
        for process in started:
            stop(process)
        redis.stop()


def rss_mb(pid: int) -> float:
    """A process's resident memory now (VmRSS), in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peer_installed() -> bool:
    return PEER_PYTHON.exists()


@contextlib.contextmanager
def peer(llm: FakeLLM, scratch: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """aipyapp 0.5.0's agent mode, its home (and so its config) in `scratch`."""
    home = scratch / "peer-home"
    config_dir = home / ".aipyapp"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "aipyapp.toml").write_text(
        f'[llm.fake]\ntype = "openai"\nbase_url = "{llm.openai_base_url}"\napi_key = "{llm.api_key}"\n'
        f'model = "{PEER_MODEL}"\nenable = true\ndefault = true\n')
    port = free_port()
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("AIPY", "PYTHON"))}
    # Its `agent --port` is not read (0.5.0 serves on 8848 whatever it is given);
    # Dynaconf takes AIPY_PORT from the environment instead.
    environ.update(HOME=str(home), NO_PROXY="127.0.0.1", AIPY_PORT=str(port))
    process = _start([str(PEER_PYTHON), "-m", "aipyapp", "-c", str(config_dir), "agent"],
                     environ, home, scratch / "peer.log")
    with _serving(process, port) as served:
        yield served
