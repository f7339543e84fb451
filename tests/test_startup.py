"""An honest start, for every entry point as a real process: what can stop
it (the configuration, a --role file, the data folder, the port) is tried
before anything says it is ready, and a failure is exactly one `error:` line
on stderr and a non-zero exit: no banner, no traceback, no worker or
cleanup started."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from typing import Callable

import pytest
import requests

from .live_server import ROOT, service_env, stop_processes, wait_until_serving
from .polling import wait_until
from .redis_server import free_port

#: Each entry point's command line (after `python`).
ENTRY_POINTS = {
    "agent": ["-m", "app", "--agent"],
    "web": ["-m", "app.serve"],
    "worker": ["-m", "actors.worker"],
    "clock": ["-m", "actors.clock"],
}

#: The start-up's exit statuses (actors/entry.py).
HOST_ERROR, CONFIG_ERROR = 1, 2


def run(tmp_path, fake_llm, argv: list[str], prefix: list[str] | None = None,
        **env: str) -> subprocess.CompletedProcess:
    """`python *argv` to its end (within 60 s), run from `tmp_path`, its data in
    `tmp_path`/data unless `env` says otherwise."""
    env = {"AIPYTHON_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run([*(prefix or []), sys.executable, *argv], cwd=tmp_path, env=service_env(fake_llm, **env),
                          capture_output=True, text=True, timeout=60)


def assert_one_error_line(proc: subprocess.CompletedProcess, status: int, *fragments: str) -> str:
    """The process said exactly one line, on stderr, `error: ...` holding
    every fragment, and exited with `status`; that line."""
    said = (proc.stdout + proc.stderr).splitlines()
    assert len(said) == 1 and proc.stdout == "", said
    line = said[0]
    assert line.startswith("error: ") and proc.returncode == status, (proc.returncode, line)
    for fragment in fragments:
        assert fragment in line, line
    return line


@pytest.mark.parametrize("entry", ["agent", "web"])
def test_a_busy_port_is_one_line_before_the_banner(tmp_path, fake_llm, entry):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = run(tmp_path, fake_llm, [*ENTRY_POINTS[entry], "--port", str(port)] if entry == "agent"
                   else ENTRY_POINTS[entry], PORT=str(port))
    host = "127.0.0.1" if entry == "agent" else "0.0.0.0"
    assert_one_error_line(proc, HOST_ERROR, f"cannot listen on {host}:{port}: Address already in use")


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("where", ["the folder", "its parent"])
def test_a_file_where_the_data_folder_should_be_is_one_line(tmp_path, fake_llm, entry, where):
    (tmp_path / "taken").write_text("not a folder")
    folder = tmp_path / "taken" if where == "the folder" else tmp_path / "taken" / "data"
    proc = run(tmp_path, fake_llm, ENTRY_POINTS[entry], AIPYTHON_DATA_DIR=str(folder), PORT=str(free_port()))
    assert_one_error_line(proc, HOST_ERROR, f"the data folder {folder} cannot be made: a file stands")


@pytest.fixture
def read_only_mount(tmp_path) -> list[str]:
    """A command prefix that runs a program in a mount namespace of its own
    where the folder `tmp_path`/ro is an empty read-only file system (so it
    stops root too, and disappears with the program); skips where mounting
    is not allowed."""
    folder = tmp_path / "ro"
    folder.mkdir()
    unshare = shutil.which("unshare") or pytest.skip("unshare (util-linux) is not installed")
    prefix = [unshare, "--mount", "--propagation", "private", "sh", "-c",
              'mount -t tmpfs -o ro,size=1m tmpfs "$0" && exec "$@"', str(folder)]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a read-only file system here: {probe.stderr.strip()}")
    return prefix


@pytest.mark.parametrize("entry", ["agent", "worker"])
def test_a_data_folder_on_a_read_only_file_system_is_one_line(tmp_path, fake_llm, read_only_mount, entry):
    folder = tmp_path / "ro" / "data"
    proc = run(tmp_path, fake_llm, ENTRY_POINTS[entry], prefix=read_only_mount, AIPYTHON_DATA_DIR=str(folder),
               PORT=str(free_port()))
    assert_one_error_line(proc, HOST_ERROR, f"the data folder {folder} cannot be used", "read-only")


def test_a_role_file_that_does_not_exist_is_one_line(tmp_path, fake_llm):
    proc = run(tmp_path, fake_llm, [*ENTRY_POINTS["agent"], "--port", str(free_port()), "--role", "roles/analyst.txt"])
    assert_one_error_line(proc, CONFIG_ERROR, "--role roles/analyst.txt: the file does not exist")


@pytest.mark.parametrize("entry, variable, value", [
    ("agent", "AIPYTHON_WORKERS", "abc"),
    ("web", "AIPYTHON_ENGINE__MAX_ROUNDS", "-1"),
    ("worker", "AIPYTHON_DEBUG", "maybe"),
    ("clock", "AIPYTHON_LLM_PROTOCOL", "smoke-signals"),
])
def test_a_bad_environment_value_is_named_as_that_variable(tmp_path, fake_llm, entry, variable, value):
    proc = run(tmp_path, fake_llm, ENTRY_POINTS[entry], PORT=str(free_port()), **{variable: value})
    line = assert_one_error_line(proc, CONFIG_ERROR, f"environment variable {variable}: ", repr(value))
    assert "settings.json" not in line and "llm.json" not in line


def test_no_worker_without_redis_is_one_line(tmp_path, fake_llm):
    proc = run(tmp_path, fake_llm, [*ENTRY_POINTS["agent"], "--no-worker", "--port", str(free_port())])
    assert_one_error_line(proc, CONFIG_ERROR, "--no-worker needs REDIS_URL")


def test_version_prints_the_version_and_exits_0(tmp_path, fake_llm):
    proc = run(tmp_path, fake_llm, ["-m", "app", "--version"])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "aipy-agent 1.0.0\n", "")


def test_help_lists_the_tail_subcommand_whose_own_help_works(tmp_path, fake_llm):
    usage = run(tmp_path, fake_llm, ["-m", "app", "--help"])
    assert usage.returncode == 0 and "tail TASK_ID" in usage.stdout and "--version" in usage.stdout
    tail = run(tmp_path, fake_llm, ["-m", "app", "tail", "--help"])
    assert tail.returncode == 0 and tail.stdout.startswith("usage: aipy-agent tail")


@pytest.mark.parametrize("flag, libraries", [("--debug", False), ("--debug-all", True)])
def test_debug_shows_our_debug_lines_and_the_libraries_only_when_asked(tmp_path, fake_llm, flag, libraries):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "app", "--agent", "--port", str(port), flag],
                               cwd=tmp_path, env=service_env(fake_llm, AIPYTHON_DATA_DIR=str(tmp_path / "data")),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(process, port)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0]
    assert "| DEBUG    | aipy.startup" in output
    # Dramatiq says what each consumer thread does at DEBUG as it starts.
    assert ("| DEBUG    | dramatiq" in output) is libraries


# -- Redis: where tasks run, and a Redis that is not there yet ---------------------------


def started(tmp_path, argv: list[str], env: dict[str, str], name: str) -> tuple[subprocess.Popen, Callable[[], str]]:
    """`python *argv` from the project folder, its output in `tmp_path`/<name>.log;
    the process and a function that reads that output so far."""
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, log_path.read_text


def test_no_worker_says_where_tasks_run_and_warns_of_a_task_no_worker_takes(tmp_path, fake_llm, redis_server):
    from .fake_llm import Reply

    port = free_port()
    env = service_env(fake_llm, REDIS_URL=redis_server.url, AIPYTHON_DATA_DIR=str(tmp_path / "data"),
                      AIPYTHON_NO_WORKER_WARN_S="0.5", AIPYTHON_WORKERS="2")
    web, web_output = started(tmp_path, ["-m", "app", "--agent", "--no-worker", "--port", str(port)], env, "web")
    worker = None
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: "📊 Health Check" in web_output(), timeout=30, what="the banner")
        assert (f"📭 This process runs no tasks (--no-worker): worker processes (python -m actors.worker) take "
                f"them from the Redis queue {redis_server.url} (seen now: 0)") in web_output()
        health = requests.get(f"{url}/health", timeout=10).json()
        assert (health["runs_tasks"], health["task_queue"], health["workers_seen"]) == (False, redis_server.url, 0)

        task_id = requests.post(f"{url}/tasks", json={"instruction": "wait for a worker"}, timeout=10).json()["task_id"]
        warning = wait_until(lambda: [line for line in web_output().splitlines() if "No worker takes tasks" in line],
                             timeout=30, what="the no-worker warning")
        assert len(warning) == 1 and task_id in warning[0] and "WARNING" in warning[0]

        fake_llm.script(Reply("Done."))
        worker, _ = started(tmp_path, ["-m", "actors.worker"], env, "worker")
        wait_until(lambda: requests.get(f"{url}/tasks/{task_id}", timeout=10).json()["status"] == "completed",
                   timeout=60, what="the worker to run the task")
        assert requests.get(f"{url}/health", timeout=10).json()["workers_seen"] == 1
    finally:
        stop_processes(web, *([worker] if worker else []))


def test_an_unreachable_redis_is_one_line_then_retried_until_it_answers(tmp_path, fake_llm):
    from .fake_llm import Reply
    from .redis_server import RedisServer

    redis_port, port = free_port(), free_port()
    url = f"redis://:hunter2@127.0.0.1:{redis_port}/0"
    shown = f"redis://:***@127.0.0.1:{redis_port}/0"
    env = service_env(fake_llm, REDIS_URL=url, PORT=str(port), AIPYTHON_DATA_DIR=str(tmp_path / "data"),
                      AIPYTHON_DEBUG="1", AIPYTHON_WORKERS="2")
    worker, worker_output = started(tmp_path, ["-m", "actors.worker"], env, "worker")
    web, web_output = started(tmp_path, ["-m", "app.serve"], env, "web")
    redis_server = None
    try:
        # Four tries (0.5 + 1 + 2 s of waiting between them): Dramatiq's
        # consumers would have logged CRITICAL every 3 s by then.
        wait_until(lambda: "try 4 failed" in worker_output(), timeout=30, what="the worker's fourth try")
        wait_until(lambda: "is unreachable" in web_output(), timeout=30, what="the web process's line")
        for output in (worker_output(), web_output()):
            said = [line for line in output.splitlines() if " | WARNING  | " in line or " | CRITICAL | " in line
                    or " | ERROR    | " in line]
            assert len(said) == 1 and f"Redis at {shown} is unreachable" in said[0], said
            assert "hunter2" not in output
        assert "worker takes tasks once it answers" in worker_output()
        submit = requests.post(f"http://127.0.0.1:{port}/tasks", json={"instruction": "too early"}, timeout=10)
        assert submit.status_code == 503 and "unreachable" in submit.json()["detail"]

        redis_server = RedisServer(tmp_path, port=redis_port, password="hunter2")
        wait_until(lambda: f"Redis at {shown} answers" in worker_output(), timeout=60, what="the worker to connect")
        fake_llm.script(Reply("Done."))
        submit = requests.post(f"http://127.0.0.1:{port}/tasks", json={"instruction": "now"}, timeout=10)
        task_id = submit.json()["task_id"]
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/tasks/{task_id}", timeout=10).json()["status"]
                   == "completed", timeout=60, what="the task to run")
        assert " | CRITICAL | " not in worker_output()
    finally:
        stop_processes(web, worker)
        if redis_server is not None:
            redis_server.stop()


@pytest.mark.parametrize("entry", ["worker", "clock"])
def test_a_process_waiting_for_redis_stops_at_once_on_sigterm(tmp_path, fake_llm, entry):
    env = service_env(fake_llm, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                      AIPYTHON_DATA_DIR=str(tmp_path / "data"))
    process, output = started(tmp_path, ENTRY_POINTS[entry], env, entry)
    try:
        wait_until(lambda: "is unreachable" in output(), timeout=30, what="the unreachable line")
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, output()  # a supervisor's budget, not a pause
        assert "stopped before Redis answered" in output()
    finally:
        stop_processes(process)


@pytest.mark.parametrize("entry", ["worker", "clock"])
def test_without_redis_a_worker_or_clock_says_it_has_nothing_to_do_and_idles_until_stopped(tmp_path, fake_llm,
                                                                                         entry):
    # No REDIS_URL: the web process runs the tasks; this process must neither
    # pretend to work (a queue nobody sends to, warm kernels holding uids) nor
    # exit, which would make honcho stop the whole Procfile.
    env = service_env(fake_llm, AIPYTHON_DATA_DIR=str(tmp_path / "data"))
    process, output = started(tmp_path, ENTRY_POINTS[entry], env, entry)
    try:
        wait_until(lambda: "has nothing to do" in output(), timeout=30, what="the idle line")
        assert process.poll() is None, output()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, output()  # a supervisor's budget, not a pause
        said = [line for line in output().splitlines() if " | " in line]
        assert len(said) == 1 and "WARNING" in said[0] and f"this {entry} process" in said[0], said
    finally:
        stop_processes(process)
