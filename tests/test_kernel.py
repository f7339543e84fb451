"""A kernel per task (agent/kernel.py): a task's Python blocks share one
interpreter, through the real pipeline (the fake LLM over HTTP, the engine,
the sandbox tier, the kernel) on both root tiers, and everything a block
starts still ends with the block; then the kernel's finer points, through
the executor a worker uses."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from agent import EngineSettings, ExecLimits, Executor
from agent.kernel import LOST_NOTICE
from agent.prompt import system_prompt

from .conftest import make_engine
from .fake_llm import Block, Reply
from .procs import new_marker, processes_of, running
from .security.conftest import block_python
from .security.test_tiers import bwrap_missing

TIERS = ["bubblewrap", "process"]


@pytest.fixture(params=TIERS)
def tier(request) -> str:
    if os.geteuid() != 0:
        pytest.skip("the tiers' uids need the tests to run as root")
    if request.param == "bubblewrap" and bwrap_missing():
        pytest.skip(bwrap_missing())
    if request.param == "process" and block_python() is None:
        pytest.skip("no interpreter that other users can run (the process tier's uids need one)")
    return request.param


@pytest.fixture
def workspace():
    """A workspace under a folder the sandbox's uids may pass through, as a
    data folder is (pytest's tmp_path lies under one only root may enter)."""
    root = Path(tempfile.mkdtemp(prefix="aipy-kernel-test-"))
    os.chmod(root, 0o711)
    yield root / "ws"
    shutil.rmtree(root, ignore_errors=True)


def engine_on(fake_llm, tier: str, **settings):
    python = block_python() if tier == "process" else None
    return make_engine(fake_llm, "openai", "tools", sandbox=tier, python=python, **settings)


def results(recorder) -> list[dict]:
    return [content["result"] for content in recorder.of("exec_result")]


def sent_back(fake_llm, request_index: int) -> str:
    return str(fake_llm.requests[request_index]["body"]["messages"])


# -- through the pipeline, on each tier ----------------------------------------


def test_variables_imports_functions_and_open_files_last_across_rounds(fake_llm, recorder, workspace, tier):
    first = ("import math\ncounter = 41\ndef twice(n):\n    return 2 * n\n"
             "log = open('log.txt', 'w')\n_ = log.write('first\\n')\n")
    third = "_ = log.write('third\\n')\nlog.close()\nprint(twice(counter) + 1, math.pi > 3, open('log.txt').read().split())\n"
    fake_llm.script(Reply("Setting up.", blocks=[Block("python", first)]),
                    Reply("A shell in between.", blocks=[Block("bash", "echo between; ls")]),
                    Reply("Using it.", blocks=[Block("python", third)]),
                    Reply("Done."))
    engine_on(fake_llm, tier).run("remember", workspace, recorder)

    one, two, three = results(recorder)
    assert one["status"] == "success" and "value" not in one, one
    assert two["stdout"] == "between\nlog.txt\n", two
    assert three["status"] == "success" and three["stdout"] == "83 True ['first', 'third']\n", three
    assert "notice" not in three
    assert "one interpreter for the whole task" in str(fake_llm.requests[0]["body"])


def test_a_final_bare_expression_is_the_blocks_value_and_the_model_sees_it(fake_llm, recorder, workspace, tier):
    fake_llm.script(Reply("Computing.", blocks=[Block("python", "x = [1, 2]\nprint('sum', sum(x))\nx + [3]\n")]),
                    Reply("Printing only.", blocks=[Block("python", "print(x)")]),
                    Reply("A big one.", blocks=[Block("python", "'y' * 5000")]),
                    Reply("Done."))
    engine_on(fake_llm, tier, output_cap_bytes=1024).run("values", workspace, recorder)

    computed, printed, big = results(recorder)
    assert computed["value"] == "[1, 2, 3]" and computed["stdout"] == "sum 3\n", computed
    assert computed["output"] == "sum 3\n[1, 2, 3]"
    assert "--- value ---\\n[1, 2, 3]" in sent_back(fake_llm, 1)
    assert "value" not in printed and printed["stdout"] == "[1, 2]\n"  # print() is None: no value
    assert big["value"].startswith("'" + "y" * 1000) and "5002 bytes total, first 1024 kept" in big["value"]


def test_an_exception_is_the_blocks_error_and_the_kernel_lives_on(fake_llm, recorder, workspace, tier):
    fake_llm.script(Reply("Failing.", blocks=[Block("python", "x = 5\ndef f():\n    raise ValueError('boom')\nf()\n")]),
                    Reply("Still there?", blocks=[Block("python", "print(x)")]),
                    Reply("Done."))
    engine_on(fake_llm, tier).run("fail then go on", workspace, recorder)

    failed, after = results(recorder)
    assert failed["status"] == "error" and failed["returncode"] == 1
    trace = failed["stderr"]
    assert trace.startswith("Traceback (most recent call last):\n") and trace.endswith("ValueError: boom\n")
    assert [line.split(",")[1].strip() for line in trace.splitlines() if line.startswith("  File")] == \
        ["line 4", "line 3"]  # the model's own frames only: no kernel, no bootstrap
    assert after["stdout"] == "5\n" and "notice" not in after


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_timeout_replaces_the_kernel_and_the_model_is_told(fake_llm, recorder, workspace, tier, lang):
    fake_llm.script(Reply("Set.", blocks=[Block("python", "y = 1")]),
                    Reply("Spin.", blocks=[Block("python", "while True:\n    pass\n")]),
                    Reply("Again.", blocks=[Block("python", "print('y' in globals())")]),
                    Reply("Done."))
    engine_on(fake_llm, tier, exec_timeout_s=1, lang=lang).run("spin", workspace, recorder)

    _, spun, again = results(recorder)
    assert spun["status"] == "timeout"
    assert again["status"] == "success" and again["stdout"] == "False\n"
    assert again["notice"] == LOST_NOTICE[lang] and again["output"].startswith(LOST_NOTICE[lang])
    assert LOST_NOTICE[lang] in sent_back(fake_llm, 3)


def test_what_a_block_starts_ends_with_it_and_the_kernel_waits_frozen(fake_llm, recorder, workspace, tier):
    plain, session = new_marker("plain"), new_marker("setsid")
    first = (
        "import os, subprocess, threading, time\n"
        f"subprocess.Popen(['bash', '-c', 'exec -a {plain} sleep 60'])\n"
        f"subprocess.Popen(['bash', '-c', 'exec -a {session} sleep 60'], start_new_session=True)\n"
        "subprocess.Popen(['bash', '-c', 'while true; do echo leak; sleep 0.01; done'], start_new_session=True)\n"
        "threading.Thread(target=lambda: [(subprocess.Popen(['true']), time.sleep(0.01)) for _ in range(10**6)],"
        " daemon=True).start()\n"
        "os.write(1, f'uid {os.getuid()}\\n'.encode())  # one write: the leaking loop cannot split it\n"
    )
    between: dict = {}

    def respond(body: dict) -> Reply:
        if len(fake_llm.requests) == 1:
            return Reply("Start things.", blocks=[Block("python", first)])
        if len(fake_llm.requests) == 2:  # block 1 has ended; block 2 has not begun
            uid = int(re.search(r"uid (\d+)", str(body["messages"])).group(1))
            between.update(running=[running(plain), running(session)], processes=processes_of(uid), uid=uid)
            return Reply("Next.", blocks=[Block("python", "import time\ntime.sleep(0.2)\nprint('two')\n")])
        return Reply("Done.")

    fake_llm.responder = respond
    engine_on(fake_llm, tier).run("background", workspace, recorder)

    assert between["running"] == [False, False], between
    assert between["processes"] == ["T"], between  # the kernel alone, stopped
    one, two = results(recorder)
    assert one["status"] == "success" and "leak" not in two["stdout"], two
    assert two["stdout"] == "two\n"
    assert processes_of(between["uid"]) == []  # nothing of the task is left, the kernel included


@pytest.mark.parametrize("ending", ["answer", "error"])
def test_no_kernel_process_is_left_after_the_task(fake_llm, recorder, workspace, tier, ending):
    fake_llm.script(Reply("Who am I?", blocks=[Block("python", "import os\nprint(os.getuid())\n")]),
                    Reply("Done.") if ending == "answer" else Reply(status=401))
    engine_on(fake_llm, tier, llm_retries=0).run("who", workspace, recorder)

    assert recorder.last("task_end")["status"] == ("completed" if ending == "answer" else "error")
    uid = int(results(recorder)[0]["stdout"])
    assert uid in range(1_200_000, 1_201_000) and processes_of(uid) == []


def test_what_the_code_starts_while_its_kernel_ends_does_not_outlive_the_task(fake_llm, recorder, workspace, tier):
    # The kernel's end runs the code's atexit handlers: one starts a new
    # session's process that ignores SIGTERM. Under bubblewrap the task's end
    # trusts the sandbox's pid namespace to have taken it down (no sweep of
    # the uid); on the process tier the uid's sweep must find it.
    code = ("import atexit, os, subprocess\nprint(os.getuid())\n"
            "def linger():\n"
            "    subprocess.Popen(['sh', '-c', 'trap \"\" TERM; exec sleep 300'], start_new_session=True,\n"
            "                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "atexit.register(linger)\n")
    fake_llm.script(Reply("Leave something.", blocks=[Block("python", code)]), Reply("Done."))
    engine_on(fake_llm, tier).run("linger", workspace, recorder)

    assert recorder.last("task_end")["status"] == "completed"
    assert processes_of(int(results(recorder)[0]["stdout"])) == []


def test_ending_the_task_flushes_open_files_and_runs_atexit_handlers(workspace, tier):
    # The end of the task is the end of the kernel's script: what a script's
    # exit would write is in the workspace when the task's end is recorded.
    python = block_python() if tier == "process" else None
    executor = Executor(ExecLimits.from_settings(EngineSettings(sandbox=tier, python=python)))
    code = ("import atexit, time\nlog = open('unclosed.txt', 'w')\n_ = log.write('kept ' * 100)\n"
            "def last():\n    time.sleep(0.2)\n    open('atexit.txt', 'w').write('ran')\natexit.register(last)\n")
    with executor.session(workspace) as session:
        assert session.run("python", code).status == "success"
        assert (workspace / "unclosed.txt").read_text() == ""  # buffered until the script ends
    assert (workspace / "unclosed.txt").read_text() == "kept " * 100
    assert (workspace / "atexit.txt").read_text() == "ran"


def test_the_fresh_setting_gives_each_block_a_new_interpreter(fake_llm, recorder, workspace, tier):
    fake_llm.script(Reply("Set.", blocks=[Block("python", "x = 1\nx\n")]),
                    Reply("Read.", blocks=[Block("python", "print('x' in globals())")]),
                    Reply("Done."))
    engine_on(fake_llm, tier, python_state="fresh").run("forget", workspace, recorder)

    first, second = results(recorder)
    assert "value" not in first and second["stdout"] == "False\n" and "notice" not in second
    assert "fresh interpreter" in str(fake_llm.requests[0]["body"])


def test_the_system_prompt_says_which_python_state_is_in_force():
    assert "one interpreter for the whole task" in system_prompt("R", protocol="tools", python_state="kernel")
    assert "fresh interpreter" in system_prompt("R", protocol="markdown", python_state="fresh")
    assert "同一个解释器" in system_prompt("R", protocol="tools", lang="zh", python_state="kernel")
    assert "新的解释器" in system_prompt("R", protocol="markdown", lang="zh", python_state="fresh")


# -- the kernel's finer points, through the executor -----------------------------


@pytest.fixture
def blocks(workspace):
    """Run Python blocks one after another in one task session."""
    executor = Executor(ExecLimits.from_settings(EngineSettings(exec_timeout_s=20)))
    with executor.session(workspace) as session:
        yield lambda code, **kw: session.run("python", code, **kw)


def test_a_block_runs_as_a_main_script_with_an_empty_stdin(blocks, workspace):
    res = blocks("import sys\nprint(__name__, sys.argv == [__file__], repr(sys.stdin.read()))")
    assert res.stdout == "__main__ True ''\n", res.output
    named = blocks("import os, sys\nprint(__file__ == os.path.abspath('tools/run.py'), sys.path[0])",
                   filename="tools/run.py")
    assert named.stdout == f"True {workspace / 'tools'}\n", named.output


def test_classes_defined_in_a_block_pickle_and_modules_it_writes_import(blocks):
    blocks("import json\nclass Point:\n    pass\nopen('helper.py', 'w').write('X = 7\\n')")
    res = blocks("import pickle, helper\nprint(type(pickle.loads(pickle.dumps(Point()))).__name__, helper.X)")
    assert res.stdout == "Point 7\n", res.output


def test_each_block_starts_in_the_workspace(blocks, workspace):
    blocks("import os\nos.mkdir('sub')\nos.chdir('sub')")
    assert blocks("import os\nprint(os.getcwd())").stdout == f"{workspace}\n"


def test_sys_exit_ends_the_block_with_its_status_and_keeps_the_state(blocks):
    res = blocks("z = 1\nimport sys\nsys.exit(3)")
    assert (res.status, res.returncode) == ("error", 3)
    assert blocks("import sys\nsys.exit('bye')").stderr == "bye\n"
    again = blocks("print(z)")
    assert again.stdout == "1\n" and again.notice is None


def test_a_syntax_error_is_reported_as_python_does_and_the_kernel_lives_on(blocks):
    blocks("w = 2")
    res = blocks("def f(:\n    pass\n")
    assert res.status == "error" and res.returncode == 1
    assert res.stderr.startswith("  File \"") and res.stderr.count("  File ") == 1 and "SyntaxError" in res.stderr
    assert blocks("print(w)").stdout == "2\n"


def test_the_control_channel_is_not_inherited_by_the_blocks_programs(blocks):
    code = ("import subprocess, sys\n"
            "print(subprocess.run([sys.executable, '-c', 'import os; print(sorted(os.listdir(\"/proc/self/fd\")))'],"
            " close_fds=False, capture_output=True, text=True).stdout, end='')")
    assert blocks(code).stdout == "['0', '1', '2', '3']\n"


def test_a_fork_that_runs_on_to_the_blocks_end_does_not_answer_for_the_kernel(blocks):
    res = blocks("import os\nv = 9\npid = os.fork()\nos.write(1, b'parent\\n' if pid else b'child\\n')\n"
                 "if pid:\n    os.waitpid(pid, 0)\n")
    assert sorted(res.stdout.split()) == ["child", "parent"] and res.status == "success"
    after = blocks("print(v)")
    assert after.stdout == "9\n" and after.notice is None


@pytest.mark.parametrize("ending", ["import os\nos._exit(4)", "import os\nos.execvp('sh', ['sh', '-c', 'exit 4'])"])
def test_a_kernel_that_ends_itself_ends_its_block_and_the_next_is_told(blocks, ending):
    blocks("q = 1")
    res = blocks(ending)
    assert (res.status, res.returncode) == ("error", 4)
    after = blocks("print('q' in globals())")
    assert after.stdout == "False\n" and after.notice == LOST_NOTICE["en"]


def test_a_cancel_kills_the_kernel_and_the_next_block_is_told(blocks, workspace):
    blocks("q = 1")
    res = blocks("import time\ntime.sleep(30)", cancelled=lambda: True)
    assert res.status == "cancelled" and blocks("print(q)").stdout == "1\n"  # refused before it started
    res = blocks("import time\nprint('in', flush=True)\nopen('in', 'w').close()\ntime.sleep(30)",
                 cancelled=lambda: (workspace / "in").exists())
    assert res.status == "cancelled" and res.stdout == "in\n"
    after = blocks("print('q' in globals())")
    assert after.stdout == "False\n" and after.notice == LOST_NOTICE["en"]
