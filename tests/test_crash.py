"""Crashes: a worker or the embedded server SIGKILLed while a task runs (in a
block, or waiting on the LLM). Its code dies with it, and the task still
reaches a final state that tells the truth."""

from __future__ import annotations

import os
import signal

import pytest

from agent import EngineSettings
from agent.sandbox.identity import uids_with_processes
from storage import TaskStore

from .fake_llm import Block, Reply
from .live_server import Processes
from .polling import wait_until
from .procs import gone_within, new_marker, running

#: The promise: a crashed worker's task is final within this long (Redis
#: gives its message back after the 15 s heartbeat timeout).
FINAL_WITHIN_S = 60


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
        wait_until(lambda: running(marker), timeout=60, what="the task's code to run")
    else:
        wait_until(lambda: fake_llm.requests, timeout=60, what="the LLM call")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert gone_within(marker, 2.0), "the task's code outlived its worker"
    assert group.status(task_id) == "running"  # nobody has ended it yet

    group.start("-m", "actors.worker")  # the next worker gets the message back
    wait_until(lambda: group.status(task_id) == "error", timeout=FINAL_WITHIN_S, what="the task to end")
    state = TaskStore(group.data).get(task_id)
    assert "worker running this task stopped" in state["error"], state


def test_a_sigkilled_embedded_server_leaves_no_code_and_recovers_at_restart(processes, fake_llm):
    group = processes()
    server = group.start("-m", "app", "--agent", "--port", str(group.port))
    marker = new_marker("killed-server")
    fake_llm.script(sleeping_block(marker))
    task_id = group.submit("crash mid-task")
    wait_until(lambda: running(marker), timeout=60, what="the task's code to run")
    server.send_signal(signal.SIGKILL)
    server.wait()
    assert gone_within(marker, 2.0), "the task's code outlived the server"
    if os.geteuid() == 0:  # the kernels kept ready for later tasks went with it too
        uids = EngineSettings().sandbox_uids()
        wait_until(lambda: not uids_with_processes(uids), timeout=2.0, what="no process of a sandbox uid")

    group.start("-m", "app", "--agent", "--port", str(group.port))
    wait_until(lambda: group.status(task_id) == "error", timeout=FINAL_WITHIN_S,
               what="the task to end at restart")
    assert "interrupted" in TaskStore(group.data).get(task_id)["error"]
