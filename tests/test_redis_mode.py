"""Redis mode: the Procfile's web, worker and clock processes, started by a
Procfile runner (honcho, conftest's `procfile`) against a redis-server the
test starts itself."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import requests

from storage import TaskStore

from .fake_llm import Block, Reply
from .live_server import LiveServer, app_config, get_json
from .polling import wait_until

def test_procfile_processes_run_a_task_and_prune_expired_ones(procfile, fake_llm, tmp_path):
    url, data, process = procfile
    # A task that finished long ago, left by an earlier deploy: the clock's
    # first cleanup (sent at its start) must remove it.
    old = TaskStore(data, clock=lambda: datetime.now(timezone.utc) - timedelta(hours=48))
    expired = old.create("expired long ago")["task_id"]
    old.transition(expired, "running")
    old.transition(expired, "completed")

    wait_until(lambda: get_json(f"{url}/health"), timeout=30, what="the web process")
    health = get_json(f"{url}/health")
    assert health["mode"] == "redis" and health["broker"] == "ok"

    fake_llm.script(Reply("Working.", blocks=[Block("python", "print('from the worker')")]), Reply("All done."))
    response = requests.post(f"{url}/tasks", json={"instruction": "run on a worker", "metadata": {"source": "test"}})
    assert response.status_code == 200
    task_id = response.json()["task_id"]

    task = wait_until(lambda: (t := get_json(f"{url}/tasks/{task_id}")) and t["status"] in ("completed", "error") and t,
                      timeout=30, what="the task to finish")
    assert task["status"] == "completed", (tmp_path / "honcho.log").read_text()
    result = get_json(f"{url}/tasks/{task_id}/result")
    assert result["output"]["results"][0]["result"]["stdout"] == "from the worker\n"
    assert result["output"]["answer"] == "All done."
    assert result["output"]["metadata"]["model"] == "fake-service"

    wait_until(lambda: requests.get(f"{url}/tasks/{expired}", timeout=2).status_code == 404, timeout=30,
               what="the cleanup")
    assert process.poll() is None


def test_submit_is_503_when_redis_is_down_and_reads_still_work(tmp_path, fake_llm, redis_server):
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
