"""The sandbox as the service wires it: the data folder masked for tasks, and
processes that run tasks non-dumpable. The attacks themselves, per tier, are
in tests/security/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .fake_llm import Block, Reply
from .security.test_tiers import bwrap_missing

ROOT = Path(__file__).resolve().parent.parent

needs_bwrap = pytest.mark.skipif(bwrap_missing() is not None, reason=str(bwrap_missing()))


def test_worker_processes_are_not_dumpable():
    code = (f"import sys, ctypes; sys.path.insert(0, {str(ROOT)!r})\n"
            "from agent.sandbox import protect_from_children\n"
            "protect_from_children(); print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))")  # PR_GET_DUMPABLE
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "0"


@needs_bwrap
def test_a_sandboxed_service_hides_its_data_folder_from_tasks(start_server, fake_llm):
    server = start_server(engine={"sandbox": "bubblewrap"})
    tasks_dir = server.store.tasks_dir
    code = f"import os\nprint(os.path.exists({str(tasks_dir)!r}))\nopen('out.txt', 'w').write('kept')\n"
    fake_llm.script(Reply("Looking.", blocks=[Block("python", code)]), Reply("Done."))
    task_id = server.submit("look around")
    server.wait_for(task_id)
    result = server.store.result(task_id)["output"]["results"][0]["result"]
    assert result["status"] == "success", result["output"]
    assert result["stdout"] == "False\n"  # the state tree is masked; only the workspace is bound back
    assert (server.store.workspace(task_id) / "out.txt").read_text() == "kept"
