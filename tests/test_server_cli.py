"""`python -m app --agent`: the spec's command line, as a real process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import requests

from storage import TaskStore

from .fake_llm import Block, Reply
from .live_server import ROOT, service_env, wait_until_serving
from .polling import wait_until
from .redis_server import free_port


def start(tmp_path, fake_llm, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--agent", "--port", str(port), "--data-dir", str(tmp_path / "data"), *args],
        cwd=tmp_path, env=service_env(fake_llm), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return process, wait_until_serving(process, port)


def test_prints_the_banner_and_serves(tmp_path, fake_llm):
    process, url = start(tmp_path, fake_llm, "--workers", "2")
    try:
        assert requests.get(f"{url}/").json()["name"] == "AIPython Agent API"
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0]
    assert "🤖 AIPython Agent Mode (1.0.0)" in output
    assert f"🚀 Starting HTTP API server on 127.0.0.1:{url.rsplit(':', 1)[1]}" in output
    assert "✅ Agent manager initialized" in output and f"📊 Health Check: {url}/health" in output \
        and f"🖥️ Dashboard: {url}/ui" in output
    assert f"🔗 API Documentation: {url}/docs" in output
    assert "2 worker thread(s)" in output


def test_sigterm_stops_running_tasks_and_exits_within_ten_seconds(tmp_path, fake_llm):
    fake_llm.script(Reply("Sleeping.", blocks=[Block("python", "import time\ntime.sleep(120)\n")]))
    process, url = start(tmp_path, fake_llm)
    task_id = requests.post(f"{url}/tasks", json={"instruction": "sleep"}).json()["task_id"]
    wait_until(lambda: any(e["type"] == "exec_start" for e in TaskStore(tmp_path / "data").read_events(task_id)),
               what="the task's block to start")

    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=15)[0]
    assert time.monotonic() - started < 10
    assert process.returncode == 0, output
    assert "Shutting down" in output and "Stopped" in output
    task = TaskStore(tmp_path / "data").get(task_id)
    assert task["status"] == "error" and task["error"] == "interrupted: the server stopped while this task ran"


def test_without_agent_flag_it_says_how_to_start(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--agent" in proc.stderr


def test_a_busy_port_is_a_clear_error(tmp_path, fake_llm):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "app", "--agent", "--port", str(port),
                               "--data-dir", str(tmp_path / "data")],
                              cwd=tmp_path, env=service_env(fake_llm), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in proc.stderr


def test_app_serve_is_the_procfile_web_process(tmp_path, fake_llm):
    # The Procfile's web line: every interface, $PORT, the same server (and
    # app) as `python -m app --agent`. Only 127.0.0.1 is connected to here.
    port = free_port()
    env = service_env(fake_llm, PORT=str(port), AIPYTHON_DATA_DIR=str(tmp_path / "data"))
    process = subprocess.Popen([sys.executable, "-m", "app.serve"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = wait_until_serving(process, port)
        assert requests.post(f"{url}/tasks", json={"instruction": "hi"}).status_code == 200
        foreign = requests.get(f"{url}/tasks", headers={"Host": "rebound.example"})
        assert foreign.status_code == 403 and "AIPYTHON_ALLOWED_HOSTS" in foreign.json()["detail"]
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0]
    assert process.returncode == 0, output
    assert f"Serving HTTP on 0.0.0.0:{port}" in output
