"""The opt-in bubblewrap sandbox, and the non-dumpable worker process.

Skipped, saying why, where bwrap is missing or cannot make namespaces here."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.executor import ExecLimits, Executor, protect_from_children
from config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def bwrap_works() -> str | None:
    binary = shutil.which("bwrap")
    if binary is None:
        return "bwrap is not installed (apt-get install bubblewrap)"
    probe = subprocess.run([binary, "--ro-bind", "/", "/", "--proc", "/proc", "--unshare-pid", "true"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"bwrap cannot make namespaces here: {probe.stderr.strip()}"


needs_bwrap = pytest.mark.skipif(bwrap_works() is not None, reason=str(bwrap_works()))


@pytest.fixture
def sandboxed(tmp_path):
    data = tmp_path / "data"
    (data / "other-task").mkdir(parents=True)
    (data / "other-task" / "secret.txt").write_text("other task's output")
    workspace = data / "this-task" / "workspace"
    workspace.mkdir(parents=True)
    return Executor(ExecLimits(sandbox="bubblewrap", hide_paths=(str(data),), timeout_s=20)), workspace, data


@needs_bwrap
def test_sandboxed_code_sees_no_server_process_or_its_environment(sandboxed, monkeypatch):
    executor, workspace, _ = sandboxed
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-secret")
    code = textwrap.dedent("""
        import os
        pids = [p for p in os.listdir('/proc') if p.isdigit()]
        seen = ''.join(open(f'/proc/{p}/environ', 'rb').read().decode(errors='replace') for p in pids)
        print(len(pids), 'sk-server-secret' in seen)
    """)
    result = executor.run("python", code, workspace)
    assert result.status == "success", result.output
    count, leaked = result.stdout.split()
    assert int(count) < 5 and leaked == "False"


@needs_bwrap
def test_sandboxed_code_writes_only_its_workspace_and_sees_no_other_task(sandboxed):
    executor, workspace, data = sandboxed
    code = textwrap.dedent(f"""
        import os
        open('result.txt', 'w').write('kept')
        print(os.path.exists({str(data / 'other-task' / 'secret.txt')!r}))
        for target in ('/etc/aipy-test', {str(data / 'planted')!r}):
            try:
                open(target, 'w').write('x')
                print('wrote', target)
            except OSError as exc:
                print('refused', exc.strerror)
    """)
    result = executor.run("python", code, workspace)
    # The data folder is masked by an empty tmpfs: a write there lands on the
    # mask and vanishes with the sandbox, never reaching the real folder.
    assert result.stdout.splitlines() == [
        "False", "refused Read-only file system", f"wrote {data / 'planted'}"], result.output
    assert (workspace / "result.txt").read_text() == "kept"
    assert not Path("/etc/aipy-test").exists() and not (data / "planted").exists()


@needs_bwrap
def test_sandboxed_code_dies_with_its_worker(tmp_path):
    marker = f"aipy-orphan-{os.getpid()}-{time.monotonic_ns()}"
    worker = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from agent.executor import ExecLimits, Executor
        Executor(ExecLimits(sandbox="bubblewrap", timeout_s=60)).run(
            "bash", "exec -a {marker} sleep 60", Path({str(tmp_path / 'ws')!r}))
    """)
    process = subprocess.Popen([sys.executable, "-c", worker])
    deadline = time.monotonic() + 10
    while not running(marker):
        assert time.monotonic() < deadline, "the block never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # the worker dies mid-task
    process.wait()
    deadline = time.monotonic() + 5
    while running(marker):
        assert time.monotonic() < deadline, "the block outlived its worker"
        time.sleep(0.05)


def running(marker: str) -> bool:
    """A live (not zombie) process whose command line starts with `marker`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmdline.startswith(marker.encode()) and state != "Z":
            return True
    return False


def test_bubblewrap_without_bwrap_fails_at_start(monkeypatch, tmp_path):
    monkeypatch.setenv("AIPYTHON_ENGINE__SANDBOX", "bubblewrap")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="bwrap is not installed"):
        load_config()


def test_worker_processes_are_not_dumpable():
    code = (f"import sys, ctypes; sys.path.insert(0, {str(ROOT)!r})\n"
            "from agent.executor import protect_from_children\n"
            "protect_from_children(); print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))")  # PR_GET_DUMPABLE
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "0"


@needs_bwrap
def test_a_sandboxed_service_hides_its_data_folder_from_tasks(start_server, fake_llm):
    from .fake_llm import Block, Reply

    server = start_server(engine={"sandbox": "bubblewrap"})
    tasks_dir = server.store.tasks_dir
    code = f"import os\nprint(os.listdir({str(tasks_dir)!r}))\nopen('out.txt', 'w').write('kept')\n"
    fake_llm.script(Reply("Looking.", blocks=[Block("python", code)]), Reply("Done."))
    task_id = server.submit("look around")
    server.wait_for(task_id)
    result = server.store.result(task_id)["output"]["results"][0]["result"]
    assert result["status"] == "success", result["output"]
    assert result["stdout"] == f"[{task_id!r}]\n"  # only its own folder, bound into the mask
    assert (server.store.workspace(task_id) / "out.txt").read_text() == "kept"
