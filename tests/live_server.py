"""The whole embedded service over real HTTP, for tests and benchmarks.

A plain module (pytest's conftest is no public surface): conftest builds its
fixtures from it, and `bench/` imports it directly.
- `provider_settings`, `fast_settings`: an LLM provider pointed at the fake
  LLM, and engine settings with quick retries and short timeouts;
- `app_config`: the service's configuration around them, its data in a
  given folder;
- `LiveServer`: store, broker and worker threads behind waitress on a free
  loopback port, built as the real server is;
- `service_env`, `Processes`, `get_json`: the service as real processes
  (`python -m app --agent`, `app.serve`, `actors.worker`, `actors.clock`),
  configured by environment only, as a deploy is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import requests
from httpx_sse import EventSource

from agent import EngineSettings, LLMSettings, ProviderSettings
from app.http_server import build_server, serve_until
from config import AppConfig, load_config

from . import openapi_check
from .fake_llm import FakeLLM
from .polling import wait_until
from .redis_server import free_port

#: The project's folder: what a service process runs from and imports.
ROOT = Path(__file__).resolve().parent.parent

#: LiveServer's default for `refused_uids`: what the real server refuses.
SANDBOX_UIDS = object()

#: The statuses a task does not leave.
FINAL = ("completed", "error", "cancelled")


def provider_settings(llm: FakeLLM, kind: str, protocol: str = "tools", **changes) -> ProviderSettings:
    """A provider of type `kind` ("openai" or "anthropic") that talks to `llm`."""
    base_url = llm.openai_base_url if kind == "openai" else llm.anthropic_base_url
    values = dict(
        type=kind, model=f"fake-{kind}", base_url=base_url, api_key="test-key",
        api_key_env="FAKE_LLM_KEY", protocol=protocol, name=f"fake-{kind}",
    )
    values.update(changes)
    return ProviderSettings(**values)


def fast_settings(**changes) -> EngineSettings:
    """Engine settings tuned for tests: quick retries (llm_backoff_s 0.01),
    short timeouts (llm_timeout_s 10, exec_timeout_s 20)."""
    values = dict(llm_backoff_s=0.01, llm_timeout_s=10, exec_timeout_s=20)
    values.update(changes)
    return EngineSettings(**values)


def app_config(tmp_path, llm: FakeLLM, *, kind: str = "openai", protocol: str = "tools",
               engine: dict | None = None, **settings) -> AppConfig:
    """The service's configuration with its LLM pointed at the fake server,
    its data in `tmp_path`/data, and quick engine timings; `settings`
    override settings.json's fields, `engine` the engine's."""
    # Idle workers look at their queue every queue_idle_wake_ms and stop
    # within twice that: short here, so each test's server stops quickly.
    overrides = {"data_dir": tmp_path / "data", "queue_idle_wake_ms": 100, **settings}
    config = load_config(overrides=overrides)
    config.settings.engine = fast_settings(**(engine or {}))
    providers = {
        "fake": provider_settings(llm, kind, protocol, name="fake"),
        "fake-anthropic": provider_settings(llm, "anthropic", protocol, name="fake-anthropic"),
    }
    config.llm = LLMSettings(default="fake", providers=providers)
    config.role = "You are a test agent."
    return config


class LiveServer:
    """The whole embedded system (store, broker, worker threads) behind
    waitress on a free loopback port, built as the real server is.

    `workers` (default True) starts the worker threads at once; with False a
    test starts them itself (`system.start_workers()`). As root it refuses
    connections from the sandbox's uids unless `refused_uids` says otherwise
    (None: refuse none). Responses are checked against the server's OpenAPI
    document (see openapi_check.py) while conftest's check is installed."""

    def __init__(self, config: AppConfig, *, workers: bool = True, refused_uids=SANDBOX_UIDS):
        from actors.system import TaskSystem
        from app.factory import create_app
        from app.peers import sandbox_uids_to_refuse

        self.config = config
        self.system = TaskSystem(config)
        self.store = self.system.store
        if workers:
            self.system.start_workers()
        if refused_uids is SANDBOX_UIDS:
            refused_uids = sandbox_uids_to_refuse(config.settings.engine)
        self.server = build_server(create_app(self.system), config.settings, host="127.0.0.1", port=0,
                                   refused_uids=refused_uids)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=serve_until, args=(self.server, self.stopping), daemon=True)
        self.thread.start()
        token = config.settings.api_token
        openapi_check.set_token(self.url, token.get_secret_value() if token else None)
        openapi_check.register(self.url)

    def submit(self, instruction: str = "do it", **fields) -> str:
        """POST /tasks; the new task's id (the answer must be 200)."""
        response = requests.post(f"{self.url}/tasks", json={"instruction": instruction, **fields}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["task_id"]

    def status(self, task_id: str) -> dict:
        """GET /tasks/{task_id}: the task's status fields."""
        return requests.get(f"{self.url}/tasks/{task_id}", timeout=10).json()

    def wait_for(self, task_id: str, *statuses: str, timeout: float = 15) -> dict:
        """The task's status fields once its status is one of `statuses`
        (default: any final one), within `timeout` seconds (default 15)."""
        wanted = statuses or FINAL

        def reached() -> dict | None:
            task = self.status(task_id)
            return task if task["status"] in wanted else None

        try:
            return wait_until(reached, timeout=timeout, what=f"task {task_id} to be {' or '.join(wanted)}")
        except AssertionError as exc:  # say where it got stuck
            raise AssertionError(f"{exc}; it is {self.status(task_id)['status']}") from None

    def stop(self) -> None:
        """Stop serving (within serve_until's poll), then stop the workers."""
        openapi_check.unregister(self.url)
        self.stopping.set()
        self.thread.join(5)
        self.system.stop(timeout_s=5)


# -- the service as real processes -------------------------------------------------


def service_env(llm: FakeLLM, **env: str) -> dict[str, str]:
    """The environment of a service process a test starts: this process's,
    without its AIPYTHON_* settings and REDIS_URL, with the LLM pointed at
    `llm` (model "fake-service") and the project importable; `env` adds to
    it or overrides it."""
    base = {name: value for name, value in os.environ.items()
            if not name.startswith("AIPYTHON_") and name != "REDIS_URL"}
    base.update(AIPYTHON_LLM_BASE_URL=llm.openai_base_url, AIPYTHON_LLM_API_KEY="test-key",
                AIPYTHON_LLM_MODEL="fake-service", PYTHONPATH=str(ROOT))
    base.update(env)
    return base


def get_json(url: str):
    """The JSON of a 200 answer to GET `url`; None for any other answer, or
    when nothing listens there (yet)."""
    try:
        response = requests.get(url, timeout=2)
    except requests.ConnectionError:
        return None
    return response.json() if response.status_code == 200 else None


def stop_processes(*processes: subprocess.Popen) -> None:
    """SIGTERM to each process still running; SIGKILL to any that has not
    exited 15 s later."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Processes:
    """Service processes started by a test on one free port and one data
    folder (`tmp_path`/data) with 2 worker threads each, their output in
    `tmp_path`, each stopped by its PID; `env` adds to `service_env`."""

    def __init__(self, tmp_path: Path, llm: FakeLLM, **env: str):
        self.tmp_path = tmp_path
        self.data = tmp_path / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = service_env(llm, PORT=str(self.port), AIPYTHON_DATA_DIR=str(self.data),
                               AIPYTHON_WORKERS="2", **env)
        self.started: list[subprocess.Popen] = []

    def start(self, *argv: str) -> subprocess.Popen:
        """`python *argv` (e.g. "-m", "actors.worker"), its output in a log file."""
        with open(self.tmp_path / f"{argv[-1].replace('.', '-')}-{len(self.started)}.log", "w") as log:
            process = subprocess.Popen([sys.executable, *argv], env=self.env, cwd=ROOT, stdout=log,
                                       stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        stop_processes(*self.started)

    def submit(self, instruction: str) -> str:
        """POST /tasks once the web process answers (within 60 s); the task's id."""
        wait_until(lambda: get_json(f"{self.url}/health"), timeout=60, what="the web process")
        return requests.post(f"{self.url}/tasks", json={"instruction": instruction}, timeout=10).json()["task_id"]

    def status(self, task_id: str) -> str | None:
        """The task's status, or None while the web process does not answer."""
        task = get_json(f"{self.url}/tasks/{task_id}")
        return task and task["status"]


def read_sse(response: httpx.Response):
    """(id, event, data, arrival time) for each event of a streamed httpx
    response, read by httpx-sse (which also hands over the blank line after a
    keepalive, with no data, once an id was seen: those are skipped)."""
    for sse in EventSource(response).iter_sse():
        if sse.data:
            yield sse.id, sse.event, json.loads(sse.data), time.monotonic()


def wait_until_serving(process: subprocess.Popen, port: int) -> str:
    """The server's URL once it answers on 127.0.0.1 (within 20 s)."""
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            requests.get(f"{url}/health", timeout=1)
            return True
        except requests.ConnectionError:
            assert process.poll() is None, process.stdout.read()
            return False

    wait_until(answers, timeout=20, what="the server to answer", every=0.1)
    return url
