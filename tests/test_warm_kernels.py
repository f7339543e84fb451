"""Warm kernels (agent/warm_kernels.py): kernels started and sandboxed before
their task, taken by a task's first Python block. On both root tiers: the
task's code finds its workspace, files and uid as with a kernel of its own;
no two tasks share a kernel; a task with other limits starts its own; the
kernels no task took end with the pool, and a dead process's slots are
swept."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from agent import EngineSettings, ExecLimits, Executor, WarmKernels
from agent.sandbox import slots
from agent.sandbox.identity import uids_with_processes

from .polling import wait_until
from .security.conftest import block_python
from .test_kernel import tier  # noqa: F401  (the fixture: each root tier)


@pytest.fixture
def workspaces():
    """A folder of workspaces the sandbox's uids may pass through."""
    root = Path(tempfile.mkdtemp(prefix="aipy-warm-test-"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def warm(tier, workspaces):  # noqa: F811
    """make(size, **engine settings) -> (executor with a pool, the pool, its
    limits); every pool is closed, and waited for, at the end."""
    made: list[WarmKernels] = []

    def make(size: int = 1, **settings):
        python = block_python() if tier == "process" else None
        limits = ExecLimits.from_settings(EngineSettings(sandbox=tier, python=python, **settings))
        sandbox = Executor(limits).sandbox
        pool = WarmKernels(Executor(limits, sandbox), workspaces, size)
        made.append(pool)
        wait_until(lambda: pool.ready() == size, timeout=60, what=f"{size} warm kernel(s)")
        return Executor(limits, sandbox, warm=pool), pool, limits

    yield make
    for pool in made:
        pool.close(timeout=30)


def new_workspace(workspaces: Path, *files: str) -> Path:
    """A task's workspace, as the store makes it, with `files` given in it."""
    folder = workspaces / str(uuid.uuid4())
    folder.mkdir(mode=0o700)
    for name in files:
        (folder / name).write_text(f"given {name}\n")
    return folder


def test_a_task_takes_a_ready_kernel_and_works_in_its_own_workspace(warm, workspaces, tier):  # noqa: F811
    executor, pool, _ = warm()
    workspace = new_workspace(workspaces, "given.txt")
    code = ("import os\nprint(os.getcwd() == os.environ['HOME'], open('given.txt').read().strip())\n"
            "open('made.txt', 'w').write('by the kernel')\nprint(os.getcwd())\n")
    with executor.session(workspace) as blocks:
        first = blocks.run("python", code)
        shell = blocks.run("bash", "cat made.txt; echo; pwd; id -u")
        again = blocks.run("python", "import os\nprint(os.getuid())\nprint(os.getpriority(os.PRIO_PROCESS, 0))")
        inside = blocks.session.inside
    assert pool.taken == 1
    assert first.status == "success", first.output
    same_home, cwd = first.stdout.splitlines()[0], first.stdout.splitlines()[1]
    assert same_home == "True given given.txt", first.stdout
    if tier == "bubblewrap":  # seen where the kernel first saw it, by every block
        assert Path(cwd) == inside and inside.name.startswith(slots.PREFIX), cwd
    else:
        assert Path(cwd) == workspace
    made, pwd, uid = shell.stdout.splitlines()
    assert made == "by the kernel" and pwd == cwd, shell.stdout
    uid_again, niceness = again.stdout.split()
    assert uid_again == uid and int(uid) in executor.limits.uids
    assert niceness == "0"  # started at a lower priority, given the normal one back when taken
    assert (workspace / "made.txt").read_text() == "by the kernel"
    assert not inside.exists() or inside == workspace  # the slot left as a mount point went with the task


def test_no_two_tasks_share_a_kernel_or_a_uid(warm, workspaces):
    executor, pool, _ = warm(size=2)
    seen = []
    for value in ("first", "second"):
        with executor.session(new_workspace(workspaces)) as blocks:
            result = blocks.run("python", f"import os\nprint(globals().get('mine'), os.getuid())\nmine = {value!r}")
            seen.append(result.stdout.split())
    assert pool.taken == 2
    assert [before for before, _ in seen] == ["None", "None"], seen
    assert seen[0][1] != seen[1][1], seen


def test_a_task_with_other_limits_starts_its_own_kernel(warm, workspaces):
    executor, pool, limits = warm()
    other = ExecLimits.from_settings(EngineSettings(sandbox=limits.sandbox, python=limits.python,
                                                    task_timeout_s=limits.task_timeout_s + 60))
    with Executor(other, executor.sandbox, warm=pool).session(new_workspace(workspaces)) as blocks:
        assert blocks.run("python", "print(1)").stdout == "1\n"
    assert pool.taken == 0 and pool.ready() == 1


def test_a_task_that_ran_a_shell_block_first_starts_its_own_kernel(warm, workspaces):
    executor, pool, _ = warm()
    with executor.session(new_workspace(workspaces)) as blocks:
        assert blocks.run("bash", "echo hi").stdout == "hi\n"
        assert blocks.run("python", "print(2)").stdout == "2\n"
    assert pool.taken == 0


def test_closing_ends_the_kernels_no_task_took_and_removes_their_slots(warm, workspaces):
    executor, pool, limits = warm(size=2)
    assert len(list(workspaces.glob(slots.PREFIX + "*"))) == 2
    assert uids_with_processes(limits.uids)
    pool.close(timeout=30)
    assert not uids_with_processes(limits.uids)
    assert not list(workspaces.glob(slots.PREFIX + "*"))


def test_slots_nobody_holds_are_swept_and_held_ones_kept(tier, workspaces):  # noqa: F811
    left_over = workspaces / (slots.PREFIX + "left-over")
    left_over.mkdir()
    (left_over / "file").write_text("from a worker that died")
    held = workspaces / (slots.PREFIX + "held")
    held.mkdir()
    lock = slots.hold(held)
    try:
        assert slots.sweep(workspaces) == 1
        assert not left_over.exists() and held.is_dir()
    finally:
        os.close(lock)
    assert slots.sweep(workspaces) == 1 and not held.exists()


def test_a_task_whose_workspace_is_gone_gives_the_kernel_back_unused(warm, workspaces, tier):  # noqa: F811
    executor, pool, limits = warm()
    gone = workspaces / str(uuid.uuid4())
    with executor.session(gone) as blocks:
        result = blocks.run("python", "print(1)")
        taken_uid = blocks.session.uid
    assert pool.taken == 1 and result.stdout == "1\n", result.output  # it ran as without a pool
    wait_until(lambda: taken_uid not in uids_with_processes(limits.uids) or pool.ready(), timeout=30,
               what="the unused kernel to end")
    assert len(list(workspaces.glob(slots.PREFIX + "*"))) <= pool.size
