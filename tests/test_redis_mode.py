"""Redis mode: the Procfile's web, worker and clock processes, started by a
Procfile runner (honcho) against a redis-server the test starts itself."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from storage import TaskStore

from .fake_llm import Block, Reply
from .redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def get_json(url: str):
    try:
        response = requests.get(url, timeout=2)
    except requests.ConnectionError:
        return None
    return response.json() if response.status_code == 200 else None


@pytest.fixture
def procfile(tmp_path, redis_server, fake_llm):
    """The Procfile's processes under honcho, configured by environment only."""
    honcho = shutil.which("honcho") or pytest.skip("honcho is not installed (pip install honcho)")
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPYTHON_")}
    env.update(
        PORT=str(port), REDIS_URL=redis_server.url, AIPYTHON_DATA_DIR=str(data), AIPYTHON_WORKERS="2",
        AIPYTHON_LLM_BASE_URL=fake_llm.openai_base_url, AIPYTHON_LLM_API_KEY="test-key",
        AIPYTHON_LLM_MODEL="fake-redis", AIPYTHON_CLEANUP_INTERVAL_MINUTES="60",
        PYTHONPATH=str(ROOT), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    log = open(tmp_path / "honcho.log", "w")
    process = subprocess.Popen([honcho, "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, data, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def test_procfile_processes_run_a_task_and_prune_expired_ones(procfile, fake_llm, tmp_path):
    url, data, process = procfile
    # A task that finished long ago, left by an earlier deploy: the clock's
    # first cleanup (sent at its start) must remove it.
    old = TaskStore(data, clock=lambda: datetime.now(timezone.utc) - timedelta(hours=48))
    expired = old.create("expired long ago")["task_id"]
    old.transition(expired, "running")
    old.transition(expired, "completed")

    wait_until(lambda: get_json(f"{url}/health"), 30, "the web process")
    health = get_json(f"{url}/health")
    assert health["mode"] == "redis" and health["broker"] == "ok"

    fake_llm.script(Reply("Working.", blocks=[Block("python", "print('from the worker')")]), Reply("All done."))
    response = requests.post(f"{url}/tasks", json={"instruction": "run on a worker", "metadata": {"source": "test"}})
    assert response.status_code == 200
    task_id = response.json()["task_id"]

    task = wait_until(lambda: (t := get_json(f"{url}/tasks/{task_id}")) and t["status"] in ("completed", "error") and t,
                      30, "the task to finish")
    assert task["status"] == "completed", (tmp_path / "honcho.log").read_text()
    result = get_json(f"{url}/tasks/{task_id}/result")
    assert result["output"]["results"][0]["result"]["stdout"] == "from the worker\n"
    assert result["output"]["answer"] == "All done."
    assert result["output"]["metadata"]["model"] == "fake-redis"

    wait_until(lambda: requests.get(f"{url}/tasks/{expired}", timeout=2).status_code == 404, 30, "the cleanup")
    assert process.poll() is None


def test_submit_is_503_when_redis_is_down_and_reads_still_work(tmp_path, fake_llm, redis_server):
    from .conftest import LiveServer, app_config

    config = app_config(tmp_path, fake_llm, redis_url=redis_server.url)
    server = LiveServer(config, workers=True)
    try:
        fake_llm.script(Reply("Done."))
        task_id = server.submit("before the outage")
        assert server.wait_for(task_id)["status"] == "completed"

        redis_server.stop()
        response = requests.post(f"{server.url}/tasks", json={"instruction": "during the outage"}, timeout=10)
        assert response.status_code == 503 and "unreachable" in response.json()["detail"]
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 503
        assert requests.get(f"{server.url}/tasks/{task_id}", timeout=10).json()["status"] == "completed"
        assert list(requests.get(f"{server.url}/tasks", timeout=10).json()["tasks"]) == [task_id]
    finally:
        server.stop()
