"""Attacks on the kernel itself, run as LLM code through the whole pipeline on
every tier (see conftest.py): a kernel lives from block to block, so code
tries to run while no block does. Between two blocks a task has one process,
its kernel, and it is stopped."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ..fake_llm import Block, Reply
from ..procs import gone_within, new_marker, running

#: Forges the kernel's report of block 1 on its control socket, then goes on.
FORGE = (
    "import os\n"
    "for fd in os.listdir('/proc/self/fd'):\n"
    "    try:\n"
    "        if os.readlink(f'/proc/self/fd/{fd}').startswith('socket:'):\n"
    "            os.write(int(fd), b'{\"block\": 1, \"exit\": 0, \"value\": null, \"value_bytes\": 0}\\n')\n"
    "    except OSError:\n"
    "        pass\n"
)


@pytest.fixture
def python_state() -> str:
    return "kernel"


def task_processes(uid: int) -> list[str]:
    """The state letter of each live process of the task's uid."""
    states = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if ":" in line)
        except OSError:
            continue
        if int(fields["Uid"].split()[0]) == uid and fields["State"].split()[0] not in ("Z", "X"):
            states.append(fields["State"].split()[0])
    return states


def run_between(arena, fake_llm, blocks: list[Block], look) -> tuple[dict, list[dict], list]:
    """Run `blocks`, one per round; before each round after the first (no
    block running), call `look(uid)`. The task, its block results, what
    `look` saw each time."""
    seen: list = []

    def respond(body: dict) -> Reply:
        done = len(fake_llm.requests) - 1
        if done:
            seen.append(look(int(re.search(r"uid=(\d+)", str(body["messages"])).group(1))))
        if done < len(blocks):
            return Reply("Go on.", blocks=[blocks[done]])
        return Reply("Done.")

    fake_llm.responder = respond
    task_id = arena.server.submit("attack the kernel")
    task = arena.server.wait_for(task_id, timeout=60)
    return task, [r["result"] for r in arena.store.result(task_id)["output"]["results"]], seen


def test_a_kernel_that_fakes_its_blocks_end_is_frozen_then_killed(start_arena, tier, fake_llm):
    arena = start_arena(tier, engine={"exec_timeout_s": 3})
    marker = new_marker("forged")
    forge = Block("python", "import os\nos.write(1, f'uid={os.getuid()}\\n'.encode())\n" + FORGE
                  + f"import subprocess, time\nwhile True:\n    subprocess.Popen(['bash', '-c', 'exec -a {marker} sleep 60'])\n"
                  "    time.sleep(0.05)\n")
    task, (faked, starved), seen = run_between(arena, fake_llm, [forge, Block("python", "print('never')")],
                                               lambda uid: (task_processes(uid), running(marker)))
    assert faked["status"] == "success", faked  # the forged report ended the block early...
    assert seen[0] == (["T"], False), seen  # ...but the code is frozen, and what it started is gone
    assert starved["status"] == "timeout" and "never" not in starved["stdout"], starved  # then killed
    assert task["status"] == "completed" and gone_within(marker, 2.0)


def test_a_shell_block_cannot_wake_the_kernel_between_blocks(start_arena, tier, fake_llm):
    arena = start_arena(tier)
    marker = new_marker("woken")
    first = Block("python", "import os, subprocess, threading, time\n"
                  "os.write(1, f'uid={os.getuid()}\\n'.encode())\n"
                  f"threading.Thread(target=lambda: [(subprocess.Popen(['bash', '-c', 'exec -a {marker} sleep 60']),"
                  " time.sleep(0.05)) for _ in range(10**6)], daemon=True).start()\n")
    wake = Block("bash", "kill -CONT $(grep -l '^Uid:.*'$(id -u) /proc/[0-9]*/status | cut -d/ -f3) 2>/dev/null\n"
                         "echo woke")
    task, results, seen = run_between(arena, fake_llm, [first, wake], lambda uid: (task_processes(uid), running(marker)))
    assert [r["status"] for r in results] == ["success", "success"], results
    assert seen == [(["T"], False), (["T"], False)], seen
    assert task["status"] == "completed" and gone_within(marker, 2.0)
