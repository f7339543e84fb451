"""The data folder's layout: workspaces in a tree apart from the task state,
the folders' modes, deleting both halves of a task (also when a process dies
between them), and the upgrade of a 1.0.0 data folder."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from storage import StorageError, TaskNotFound, TaskStore
from storage import layout as storage_layout

from .test_storage import Clock, at_status, file_activity


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def root(tmp_path):
    """A data folder that does not exist yet (tmp_path itself does)."""
    return tmp_path / "data"


@pytest.fixture
def store(root, clock):
    s = TaskStore(root, clock=clock)
    yield s
    s.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def trash_entries(store: TaskStore) -> list[str]:
    return os.listdir(store.trash_dir)


def with_artifacts(store: TaskStore, status: str = "completed") -> str:
    """A task at `status` whose workspace holds files, as its code left them."""
    task_id = at_status(store, status)
    workspace = store.workspace(task_id)
    (workspace / "out").mkdir()
    (workspace / "out" / "report.csv").write_text("a,b\n")
    (workspace / "count.py").write_text("print(3)\n")
    return task_id


def assert_gone(store: TaskStore, task_id: str) -> None:
    assert not (store.tasks_dir / task_id).exists() and not (store.workspaces_dir / task_id).exists()
    with pytest.raises(TaskNotFound):
        store.get(task_id)
    with pytest.raises(TaskNotFound):
        store.workspace(task_id)


class Killed(BaseException):
    """The process dying at this point: nothing after it runs (no `except Exception` stops it)."""


@contextmanager
def failing_rename(source_to_fail: Path, error: BaseException):
    """os.rename raising `error` when it is asked to move `source_to_fail`."""
    real = os.rename

    def rename(source, target):
        if Path(source) == source_to_fail:
            raise error
        real(source, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "rename", rename)
        yield


# -- where things are ----------------------------------------------------------------------------


def test_the_workspace_lives_apart_from_the_task_state(store, root):
    task_id = store.create("x")["task_id"]
    assert store.workspaces_dir == root / "workspaces"
    assert store.workspace(task_id) == root / "workspaces" / task_id and store.workspace(task_id).is_dir()
    assert sorted(os.listdir(root / "tasks" / task_id)) == ["events.jsonl", "task.json"]
    assert sorted(os.listdir(root / "workspaces")) == [task_id]


def test_the_workspaces_folder_can_be_placed_elsewhere(tmp_path, root):
    store = TaskStore(root, workspaces=tmp_path / "volume" / "workspaces")
    task_id = with_artifacts(store)
    assert store.workspace(task_id) == tmp_path / "volume" / "workspaces" / task_id
    assert not (root / "workspaces").exists()
    store.delete(task_id)
    assert_gone(store, task_id)
    assert os.listdir(tmp_path / "volume" / "workspaces") == [] and trash_entries(store) == []
    store.close()


def test_a_workspace_without_its_task_is_not_found(store):
    task_id = store.create("x")["task_id"]
    os.rename(store.tasks_dir / task_id, store.root / "elsewhere")  # as in the middle of a delete
    with pytest.raises(TaskNotFound):
        store.workspace(task_id)


def test_check_fails_when_the_workspaces_folder_is_gone(store):
    store.check()
    os.rename(store.workspaces_dir, store.root / "unmounted")
    with pytest.raises(StorageError, match="workspaces folder .* is missing"):
        store.check()


# -- modes -----------------------------------------------------------------------------------------

MODES = {"": 0o711, "tasks": 0o700, "trash": 0o700, "idempotency": 0o700, "workspaces": 0o711}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000, 0o277])
def test_new_folders_get_their_modes_whatever_the_umask(root, umask):
    old = os.umask(umask)
    try:
        store = TaskStore(root)
        task_id = store.create("x")["task_id"]
    finally:
        os.umask(old)
    assert {name: mode(root / name) for name in MODES} == MODES
    assert mode(store.workspace(task_id)) == 0o700 and mode(store.tasks_dir / task_id) == 0o700
    store.close()


def test_opening_tightens_an_existing_data_folder_and_keeps_tighter_modes(root):
    for name in MODES:
        (root / name).mkdir(parents=True, exist_ok=True)
        os.chmod(root / name, 0o777)
    os.chmod(root / "trash", 0o500)  # chosen tighter by the operator
    os.chmod(root / "workspaces", 0o710)
    TaskStore(root).close()
    assert {name: mode(root / name) for name in MODES} == {**MODES, "trash": 0o500, "workspaces": 0o710}


def test_idempotency_keys_make_their_folder_private(tmp_path):
    from storage.idempotency import IdempotencyKeys

    keys = IdempotencyKeys(tmp_path / "alone")
    assert mode(keys.folder) == 0o700


# -- create, delete and cleanup take both folders -----------------------------------------------------


def _fail_workspace_mkdir(monkeypatch, store):
    real = storage_layout.make_dir

    def make_dir(path, mode, *rest):
        if path.parent.name == "workspaces":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, mode, *rest)

    monkeypatch.setattr(storage_layout, "make_dir", make_dir)


def _fail_index_append(monkeypatch, store):
    def append(records):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.index, "append", append)


@pytest.mark.parametrize("failing", [_fail_workspace_mkdir, _fail_index_append], ids=["workspace", "index"])
def test_a_failed_create_leaves_neither_folder(store, monkeypatch, failing):
    kept = store.create("before")["task_id"]
    failing(monkeypatch, store)
    with pytest.raises(StorageError, match="no space left on device"):
        store.create("doomed")
    monkeypatch.undo()
    assert [p.name for p in store.tasks_dir.iterdir() if "-" in p.name] == [kept]
    assert os.listdir(store.workspaces_dir) == [kept] and trash_entries(store) == []


def test_delete_removes_the_state_and_the_workspace(store):
    task_id = with_artifacts(store, "running")
    store.delete(task_id)
    assert_gone(store, task_id)
    assert trash_entries(store) == [] and os.listdir(store.workspaces_dir) == []


def test_cleanup_removes_the_state_and_the_workspace(store, clock):
    old, young = with_artifacts(store), store.create("pending")["task_id"]
    clock.advance(hours=25)
    assert store.delete_finished_older_than(24) == 1
    assert_gone(store, old)
    assert os.listdir(store.workspaces_dir) == [young] and trash_entries(store) == []


@pytest.mark.parametrize("death", [Killed(), OSError(errno.EIO, "I/O error")], ids=["killed", "rename-failed"])
def test_a_delete_stopped_between_the_two_renames_is_finished_by_the_next_cleanup(store, root, death):
    task_id, other = with_artifacts(store), with_artifacts(store)
    store.list()  # loaded: what finishes the delete below is the cleanup, not a first load's repair
    workspace = store.workspace(task_id)
    with failing_rename(workspace, death):
        if isinstance(death, Killed):
            with pytest.raises(Killed):
                store.delete(task_id)
        else:
            store.delete(task_id)  # the task is gone for every reader: the delete succeeded
    with pytest.raises(TaskNotFound):
        store.get(task_id)
    with pytest.raises(TaskNotFound):
        store.workspace(task_id)
    assert workspace.is_dir() and [name.split(".")[0] for name in trash_entries(store)] == [task_id]
    assert store.delete_finished_older_than(24) == 0  # nothing due: only the trash is emptied
    assert_gone(store, task_id)
    assert trash_entries(store) == [] and os.listdir(store.workspaces_dir) == [other]
    restarted = TaskStore(root)
    assert [t["task_id"] for t in restarted.list()[0]] == [other]
    restarted.close()


def test_a_cleanup_stopped_between_the_two_renames_is_finished_by_the_next(store, root, clock):
    task_id = with_artifacts(store)
    workspace = store.workspace(task_id)
    clock.advance(hours=25)
    with failing_rename(workspace, Killed()), pytest.raises(Killed):
        store.delete_finished_older_than(24)
    assert workspace.is_dir() and not (store.tasks_dir / task_id).exists()
    assert store.delete_finished_older_than(24) == 0  # its state folder was gone already
    assert_gone(store, task_id)
    assert trash_entries(store) == [] and store.list() == ([], 0)


def test_a_workspace_whose_task_folder_vanished_is_removed_by_the_next_process(store, root):
    kept, lost = with_artifacts(store), with_artifacts(store)
    shutil.rmtree(store.tasks_dir / lost)  # e.g. removed by hand, or a crash the index never heard of
    fresh = TaskStore(root)
    assert [t["task_id"] for t in fresh.list()[0]] == [kept]
    assert os.listdir(store.workspaces_dir) == [kept]
    fresh.close()


def test_workspaces_on_another_file_system_get_a_trash_of_their_own(root):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(root.parent).st_dev:
        pytest.skip("needs /dev/shm on another file system than the tests' temp folder")
    elsewhere = Path(tempfile.mkdtemp(dir=shm)) / "workspaces"
    try:
        store = TaskStore(root, workspaces=elsewhere)
        task_id = with_artifacts(store)
        store.delete(task_id)
        assert_gone(store, task_id)
        assert mode(elsewhere / ".trash") == 0o700 and os.listdir(elsewhere / ".trash") == []
        store.close()
    finally:
        shutil.rmtree(elsewhere.parent)


# -- reading never touches workspaces -------------------------------------------------------------


@contextmanager
def paths_touched():
    """Every path stat'ed, opened, listed, made, renamed or removed meanwhile."""
    paths: list[str] = []

    def recording(real):
        def call(path, *args, **kwargs):
            paths.append(f"fd {path}" if isinstance(path, int) else os.fsdecode(path))
            return real(path, *args, **kwargs)
        return call

    with pytest.MonkeyPatch.context() as patch, file_activity() as seen:
        patch.setattr(os, "stat", recording(os.stat))
        patch.setattr(os, "lstat", recording(os.lstat))
        yield paths
    paths.extend(path for _, path in seen)


def test_listing_and_reading_100_tasks_never_touch_a_workspace(store, root):
    ids = [with_artifacts(store) if i % 10 == 0 else at_status(store, "running") for i in range(100)]
    fresh = TaskStore(root)  # a process that just started
    with paths_touched() as touched:
        page, total = fresh.list(limit=100)
        fresh.list(status="completed")
        fresh.ids_with_status("pending", "running")
        for task_id in ids:
            fresh.get(task_id)
            fresh.result(task_id)
            fresh.read_events(task_id)
    assert total == 100 and len(page) == 100
    assert touched and not [path for path in touched if "workspaces" in path]
    fresh.close()


def test_opening_an_upgraded_data_folder_lists_no_folder(store, root):
    for _ in range(100):
        store.create("x")
    with file_activity() as seen:
        TaskStore(root).close()
    assert not [event for event in seen if event[0] in ("os.listdir", "os.scandir", "os.rename")]


# -- upgrade from 1.0.0 ------------------------------------------------------------------------------


def make_1_0_0_data_folder(root: Path, clock: Clock, count: int = 3) -> list[str]:
    """Tasks as 1.0.0 left them: `tasks/<id>/workspace/`, loose modes, no layout-version."""
    store = TaskStore(root, clock=clock)
    ids = [with_artifacts(store, status) for status in ("completed", "running", "pending")[:count]]
    store.close()
    for task_id in ids:
        os.rename(root / "workspaces" / task_id, root / "tasks" / task_id / "workspace")
        os.chmod(root / "tasks" / task_id / "workspace", 0o755)
    os.rmdir(root / "workspaces")
    os.unlink(root / "layout-version")
    for name in ("", "tasks", "trash", "idempotency"):
        os.chmod(root / name, 0o755)
    return ids


def assert_upgraded(store: TaskStore, ids: list[str]) -> None:
    root = store.root
    assert (root / "layout-version").read_text() == "2\n"
    assert {name: mode(root / name) for name in MODES} == MODES
    assert sorted(os.listdir(root / "workspaces")) == sorted(ids)
    for task_id in ids:
        workspace = store.workspace(task_id)
        assert workspace == root / "workspaces" / task_id and mode(workspace) == 0o700
        assert (workspace / "out" / "report.csv").read_text() == "a,b\n"
        assert not (root / "tasks" / task_id / "workspace").exists()
    assert {t["task_id"] for t in store.list()[0]} == set(ids)


def test_a_1_0_0_data_folder_is_upgraded_at_open(root, clock):
    ids = make_1_0_0_data_folder(root, clock)
    store = TaskStore(root, clock=clock)
    assert_upgraded(store, ids)
    store.delete(ids[0])
    assert_gone(store, ids[0])
    store.transition(ids[1], "completed")
    clock.advance(hours=25)
    assert store.delete_finished_older_than(24) == 1
    assert_gone(store, ids[1])
    assert sorted(os.listdir(store.workspaces_dir)) == [ids[2]] and trash_entries(store) == []
    store.close()


def test_an_upgrade_killed_midway_is_finished_by_the_next_open(root, clock):
    ids = make_1_0_0_data_folder(root, clock)
    in_upgrade_order = [entry.name for entry in os.scandir(root / "tasks") if entry.is_dir()]
    with failing_rename(root / "tasks" / in_upgrade_order[1] / "workspace", Killed()), pytest.raises(Killed):
        TaskStore(root, clock=clock)
    assert not (root / "layout-version").exists() and len(os.listdir(root / "workspaces")) == 1
    store = TaskStore(root, clock=clock)
    assert_upgraded(store, ids)
    store.close()


def test_stores_opening_a_1_0_0_data_folder_at_once_upgrade_it_once(root, clock):
    ids = make_1_0_0_data_folder(root, clock)
    stores, errors = [], []

    def open_store():
        try:
            stores.append(TaskStore(root, clock=clock))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(stores) == 4
    for store in stores:
        assert_upgraded(store, ids)
        store.close()


def test_an_interrupted_1_0_0_delete_in_the_trash_is_emptied(root, clock):
    ids = make_1_0_0_data_folder(root, clock, count=1)
    os.rename(root / "tasks" / ids[0], root / "trash" / f"{ids[0]}.0badf00d")  # with its workspace inside
    store = TaskStore(root, clock=clock)
    clock.advance(hours=25)
    store.delete_finished_older_than(24)
    assert trash_entries(store) == [] and os.listdir(store.workspaces_dir) == []
    store.close()


def test_a_fresh_data_folder_records_its_layout_without_an_upgrade(store, root):
    assert (root / "layout-version").read_text() == "2\n"
    assert storage_layout.layout_version(root) == storage_layout.VERSION


# -- helpers used above keep their word -------------------------------------------------------------


def test_a_young_folder_without_task_json_is_kept_with_its_workspace(store, root):
    task_id = str(uuid.uuid4())
    (store.tasks_dir / task_id).mkdir()
    (store.workspaces_dir / task_id).mkdir()  # a create in progress in another process
    fresh = TaskStore(root)
    assert fresh.list() == ([], 0)
    assert (store.tasks_dir / task_id).is_dir() and (store.workspaces_dir / task_id).is_dir()
    old = time.time() - 3600
    os.utime(store.tasks_dir / task_id, (old, old))
    fresh.close()
    again = TaskStore(root)
    assert again.list() == ([], 0)
    assert not (store.tasks_dir / task_id).exists() and not (store.workspaces_dir / task_id).exists()
    again.close()
