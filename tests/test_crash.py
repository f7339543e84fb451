"""Crashes: a worker or the embedded server SIGKILLed while a task runs (in a
block, or waiting on the LLM). Its code dies with it, and the task still
reaches a final state that tells the truth."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from storage import TaskStore

from .fake_llm import Block, Reply
from .procs import gone_within, new_marker, running
from .redis_server import free_port
from .test_redis_mode import get_json, wait_until

ROOT = Path(__file__).resolve().parent.parent

#: The promise: a crashed worker's task is final within this long (Redis
#: gives its message back after the 15 s heartbeat timeout).
FINAL_WITHIN_S = 60


class Processes:
    """Service processes started by the test, each stopped by its PID."""

    def __init__(self, tmp_path: Path, fake_llm, **env):
        self.tmp_path = tmp_path
        self.data = tmp_path / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIPYTHON_")}
        self.env.update(PORT=str(self.port), AIPYTHON_DATA_DIR=str(self.data), AIPYTHON_WORKERS="2",
                        AIPYTHON_LLM_BASE_URL=fake_llm.openai_base_url, AIPYTHON_LLM_API_KEY="test-key",
                        AIPYTHON_LLM_MODEL="fake-crash", PYTHONPATH=str(ROOT), **env)
        self.started: list[subprocess.Popen] = []

    def start(self, *argv: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{argv[-1].replace('.', '-')}-{len(self.started)}.log", "w")
        process = subprocess.Popen([sys.executable, *argv], env=self.env, cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def submit(self, instruction: str) -> str:
        wait_until(lambda: get_json(f"{self.url}/health"), 60, "the server")
        return requests.post(f"{self.url}/tasks", json={"instruction": instruction}, timeout=10).json()["task_id"]

    def status(self, task_id: str) -> str | None:
        task = get_json(f"{self.url}/tasks/{task_id}")
        return task and task["status"]


@pytest.fixture
def processes(tmp_path, fake_llm):
    made: list[Processes] = []

    def make(**env) -> Processes:
        made.append(Processes(tmp_path, fake_llm, **env))
        return made[-1]

    yield make
    for group in made:
        group.stop_all()


def sleeping_block(marker: str) -> Reply:
    return Reply("Sleeping.", blocks=[Block("python", f"import os\nos.execvp('sleep', ['{marker}', '60'])\n")])


@pytest.mark.parametrize("moment", ["in a block", "waiting on the LLM"])
def test_a_sigkilled_worker_leaves_no_code_and_its_task_ends(processes, redis_server, fake_llm, moment):
    group = processes(REDIS_URL=redis_server.url)
    group.start("-m", "app.serve")
    worker = group.start("-m", "actors.worker")
    marker = new_marker("killed-worker")
    if moment == "in a block":
        fake_llm.script(sleeping_block(marker))
    else:
        fake_llm.script(Reply("Too slow.", delay_s=30))
    task_id = group.submit("crash mid-task")
    if moment == "in a block":
        wait_until(lambda: running(marker), 60, "the task's code to run")
    else:
        wait_until(lambda: fake_llm.requests, 60, "the LLM call")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert gone_within(marker, 2.0), "the task's code outlived its worker"
    assert group.status(task_id) == "running"  # nobody has ended it yet

    group.start("-m", "actors.worker")  # the next worker gets the message back
    wait_until(lambda: group.status(task_id) == "error", FINAL_WITHIN_S, "the task to end")
    state = TaskStore(group.data).get(task_id)
    assert "worker running this task stopped" in state["error"], state


def test_a_sigkilled_embedded_server_leaves_no_code_and_recovers_at_restart(processes, fake_llm):
    group = processes()
    server = group.start("-m", "app", "--agent", "--port", str(group.port))
    marker = new_marker("killed-server")
    fake_llm.script(sleeping_block(marker))
    task_id = group.submit("crash mid-task")
    wait_until(lambda: running(marker), 60, "the task's code to run")
    server.send_signal(signal.SIGKILL)
    server.wait()
    assert gone_within(marker, 2.0), "the task's code outlived the server"

    group.start("-m", "app", "--agent", "--port", str(group.port))
    wait_until(lambda: group.status(task_id) == "error", FINAL_WITHIN_S, "the task to end at restart")
    assert "interrupted" in TaskStore(group.data).get(task_id)["error"]
