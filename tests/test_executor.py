"""Behaviour of the sandboxed code-block executor (agent/executor.py and the
modules it runs blocks with)."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from agent import EngineSettings, ExecLimits, ExecResult, Executor

from .procs import gone_within, new_marker, running


@pytest.fixture(params=["kernel", "fresh"])
def limits(request):
    """`limits(**fields)`: the limits of EngineSettings with these fields
    set, for Python blocks in a kernel per task or in a fresh interpreter
    per block: every behaviour here holds for both."""
    return lambda **settings: ExecLimits.from_settings(EngineSettings(python_state=request.param, **settings))


@pytest.fixture
def fast(limits) -> ExecLimits:
    return limits(exec_timeout_s=20.0)


def test_success_captures_stdout(tmp_path, fast):
    res = Executor(fast).run("python", "print('hello', 6 * 7)", tmp_path)
    assert res.status == "success"
    assert res.returncode == 0
    assert res.stdout == "hello 42\n"
    assert res.output == "hello 42\n"
    assert set(res.to_dict()) == {"status", "output", "stdout", "stderr", "returncode", "duration_ms"}


def test_named_block_is_saved_in_workspace(tmp_path, fast):
    code = "print(open(__file__).read().count('\\n'))\n"
    res = Executor(fast).run("python", code, tmp_path, filename="scripts/count_lines.py")
    assert res.status == "success", res.output
    assert res.stdout.strip() == "1"
    assert (tmp_path / "scripts" / "count_lines.py").read_text() == code


def test_unnamed_block_leaves_no_file_in_workspace(tmp_path, fast):
    res = Executor(fast).run("python", "import os; print(sorted(os.listdir('.')))", tmp_path)
    assert res.status == "success"
    assert res.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []


def test_nonzero_exit_is_error_with_traceback(tmp_path, fast):
    res = Executor(fast).run("python", "def f():\n    raise ValueError('boom')\nf()\n", tmp_path)
    assert res.status == "error"
    assert res.returncode == 1
    assert "Traceback" in res.stderr and "ValueError: boom" in res.stderr
    assert "ValueError: boom" in res.output


def test_timeout_kills_the_block_and_its_children(tmp_path, limits):
    marker = new_marker()
    code = (
        "import subprocess\n"
        f"subprocess.Popen(['bash', '-c', 'exec -a {marker} sleep 100'])\n"
        "print('started', flush=True)\n"
        "while True: pass\n"
    )
    started = time.monotonic()
    res = Executor(limits(exec_timeout_s=1.0)).run("python", code, tmp_path)
    assert time.monotonic() - started < 3.0
    assert res.status == "timeout"
    assert "1 s" in res.output and "started" in res.stdout
    assert gone_within(marker, 2.0)


def test_memory_bomb_hits_memory_limit(tmp_path, limits):
    started = time.monotonic()
    res = Executor(limits(exec_timeout_s=20.0, memory_mb=256)).run(
        "python", "x = bytearray(4 * 1024**3)", tmp_path)
    assert time.monotonic() - started < 5.0
    assert res.status == "error"
    assert "MemoryError" in res.stderr


def test_stdout_is_capped_with_truncation_marker(tmp_path, fast):
    code = "import sys\nfor _ in range(10):\n    sys.stdout.write('x' * (1024 * 1024))\n"
    res = Executor(fast).run("python", code, tmp_path)
    assert res.status == "success"
    assert res.stdout.startswith("x" * 65536 + "\n[... output truncated")
    assert "10485760 bytes total, first 65536 kept" in res.stdout


def test_stderr_is_capped_too(tmp_path, limits):
    code = "import sys\nsys.stderr.write('e' * 200000)\n"
    res = Executor(limits(exec_timeout_s=20.0, output_cap_bytes=1024)).run("python", code, tmp_path)
    assert res.status == "success"
    kept, marker = res.stderr.split("\n", 1)
    assert kept == "e" * 1024
    assert "200000 bytes total, first 1024 kept" in marker


def test_server_secrets_are_not_visible(tmp_path, monkeypatch, fast):
    secrets = {
        "OPENAI_API_KEY": "sk-openai-secret-123",
        "ANTHROPIC_API_KEY": "sk-ant-secret-456",
        "AIPYTHON_API_TOKEN": "tok-secret-789",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    res = Executor(fast).run("python", "import os; print(dict(os.environ))", tmp_path)
    assert res.status == "success"
    for name, value in secrets.items():
        assert name not in res.output and value not in res.output
    assert "PYTHONUNBUFFERED" in res.stdout and str(tmp_path) in res.stdout


def test_cancel_stops_a_sleeping_block(tmp_path, fast):
    marker = new_marker()
    flip_at = time.monotonic() + 0.3
    code = f"import os\nos.execvp('sleep', ['{marker}', '30'])\n"
    seen = []

    def cancel_once_running() -> bool:
        seen.append(running(marker))
        return time.monotonic() >= flip_at and any(seen)

    res = Executor(fast).run("python", code, tmp_path, cancelled=cancel_once_running)
    assert any(seen), "the block never started"
    assert time.monotonic() - flip_at < 1.0
    assert res.status == "cancelled"
    assert gone_within(marker, 2.0)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_block_runs(tmp_path, fast):
    res = Executor(fast).run("bash", "echo \"sum=$((2 + 3))\"; pwd", tmp_path)
    assert res.status == "success", res.output
    assert res.stdout.splitlines() == ["sum=5", str(tmp_path)]


def test_unknown_language_is_error_without_running(tmp_path, fast):
    res = Executor(fast).run("ruby", "puts 1", tmp_path)
    assert res.status == "error"
    assert res.returncode is None
    assert "'ruby' is not runnable" in res.output and "python" in res.output
    assert not Executor(fast).runnable("ruby") and Executor(fast).runnable("Python3")


@pytest.mark.parametrize("name", ["../x.py", "/etc/x.py", "a/../../x.py", "a\0.py", ""])
def test_unsafe_filename_is_refused(tmp_path, name, fast):
    workspace = tmp_path / "ws"
    res = Executor(fast).run("python", "open('ran', 'w')", workspace, filename=name)
    assert res.status == "error"
    assert res.returncode is None
    assert "refused" in res.output
    assert not (tmp_path / "x.py").exists()
    assert list(workspace.iterdir()) == []


def test_grandchild_holding_stdout_does_not_hang(tmp_path, fast):
    marker = new_marker()
    code = (
        "import subprocess\n"
        f"subprocess.Popen(['bash', '-c', 'exec -a {marker} sleep 30'])\n"
        "print('started', flush=True)\n"
    )
    started = time.monotonic()
    res = Executor(fast).run("python", code, tmp_path)
    assert time.monotonic() - started < 2.0
    assert res.status == "success" and res.stdout == "started\n"
    assert gone_within(marker, 2.0)


def test_file_size_limit_is_enforced(tmp_path, limits):
    code = "with open('big.bin', 'wb') as f:\n    f.write(b'0' * (5 * 1024 * 1024))\n"
    res = Executor(limits(exec_timeout_s=20.0, max_file_mb=1)).run("python", code, tmp_path)
    assert res.status == "error"
    assert "File too large" in res.stderr
    assert (tmp_path / "big.bin").stat().st_size <= 1024 * 1024


def test_concurrent_executors_are_isolated(tmp_path, fast):
    results: dict[int, ExecResult] = {}

    def work(i: int) -> None:
        code = f"import os\nprint('token-{i}', sorted(os.listdir('.')))\n"
        results[i] = Executor(fast).run("python", code, tmp_path / f"ws{i}", filename=f"job{i}.py")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == list(range(8))
    for i, res in results.items():
        assert res.status == "success", res.output
        assert res.stdout == f"token-{i} ['job{i}.py']\n"
        assert [p.name for p in (tmp_path / f"ws{i}").iterdir()] == [f"job{i}.py"]
