"""Deploys and crashes, with the Procfile's real processes under honcho and a
real redis-server: a group SIGTERM (what honcho, foreman, Heroku and systemd
send) stops everything cleanly. (A SIGKILLed worker: test_crash.py.)"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import requests

from .fake_llm import Block, Reply
from .live_server import get_json
from .polling import wait_until
from .procs import new_marker, running

#: What a supervisor allows between SIGTERM and SIGKILL (Heroku: 30 s; the
#: service promises 10).
STOP_BUDGET_S = 10.0


def start_sleeping_task(url: str, fake_llm) -> tuple[str, str]:
    """Submit a task whose code sleeps under a marker; wait until it runs."""
    marker = new_marker("deploy")
    fake_llm.script(Reply("Sleeping.", blocks=[Block("python", f"import os\nos.execvp('sleep', ['{marker}', '60'])\n")]))
    wait_until(lambda: get_json(f"{url}/health"), timeout=60, what="the web process")
    task_id = requests.post(f"{url}/tasks", json={"instruction": "sleep through a deploy"}, timeout=10).json()["task_id"]
    wait_until(lambda: running(marker), timeout=60, what="the task's code to run")
    return task_id, marker


def children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def exit_codes(log: str) -> dict[str, int]:
    """Each process's exit status as honcho reports it ("web.1 stopped (rc=0)")."""
    return {name: int(rc) for name, rc in re.findall(r"(\w+)\.1 stopped \(rc=(-?\d+)\)", log)}


def assert_clean_stop(process, data: Path, task_id: str, marker: str, log_path: Path, started: float) -> None:
    process.wait(STOP_BUDGET_S + 5)
    elapsed = time.monotonic() - started
    log = log_path.read_text()
    assert elapsed < STOP_BUDGET_S, log
    assert exit_codes(log) == {"web": 0, "worker": 0, "clock": 0}, log
    assert not running(marker), "the task's code outlived the deploy"
    from storage import TaskStore

    store = TaskStore(data)
    state = store.get(task_id)
    assert state["status"] == "error" and "interrupted" in state["error"], state
    assert store.read_events(task_id)[-1]["type"] == "task_end"
    assert not store.ids_with_status("running")


def test_a_group_sigterm_from_honcho_stops_every_process_cleanly(procfile, fake_llm, tmp_path):
    url, data, process = procfile
    task_id, marker = start_sleeping_task(url, fake_llm)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)  # honcho passes it to every process it runs
    assert_clean_stop(process, data, task_id, marker, tmp_path / "honcho.log", started)


def test_sigterm_to_every_process_at_once_stops_them_cleanly(procfile, fake_llm, tmp_path):
    url, data, process = procfile
    task_id, marker = start_sleeping_task(url, fake_llm)
    everyone = [process.pid, *children(process.pid)]
    assert len(everyone) == 4, everyone  # honcho, web, worker, clock: the Procfile lines exec
    started = time.monotonic()
    for pid in everyone:
        os.kill(pid, signal.SIGTERM)
    assert_clean_stop(process, data, task_id, marker, tmp_path / "honcho.log", started)
