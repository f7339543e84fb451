"""A full disk or a read-only data folder never freezes or corrupts a task.

Every scenario runs on a real 2 MB tmpfs holding the data folder, through
the real API, worker and sandbox, with the fake LLM: a task's code fills
the disk, a block prints more than the disk holds, a task's end fits in its
log but not in its task.json, submits come while the disk is full or
read-only. Once space is back (the filler deleted, as root), every task
reaches a final state without a restart, and each log reads line by line
with seqs 1..n and a task_end that says what task.json says.

Mounting needs root (as in CI); elsewhere those tests skip, saying why. The
last section holds the rules that need no mount: a read-only failure in the
middle of a run, a cursor following a log whose torn line is cut back, an
end decided for a task that another worker started since, the bound on
waiting ends, a hand-edited log, a key that cannot be stored.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
from collections import deque
from pathlib import Path

import pytest
import requests

from actors.pending_ends import EndRetry, PendingEnds
from actors.runner import LOG_FULL, LOG_READ_ONLY
from actors.system import TaskSystem
from agent.sandbox import slots
from storage import InvalidTransition, StorageFull, StorageReadOnly, TaskStore, end_content
from storage.errors import storage_error

from .fake_llm import Block, Reply
from .live_server import app_config
from .polling import wait_until

#: Writes until the disk refuses, to its last byte, then prints more than a
#: page (so its exec_result cannot fit in the log's last page either).
FILL_THE_DISK = """\
import os
fd = os.open("filler", os.O_WRONLY | os.O_CREAT, 0o644)
for size in (65536, 4096, 1):
    try:
        while True:
            os.write(fd, b"x" * size)
    except OSError:
        pass
os.close(fd)
print("y" * 100000)
"""

#: Fills the disk and prints little: what follows still fits in the log's
#: last page, but a new task.json (a new file) does not.
FILL_THE_DISK_QUIETLY = FILL_THE_DISK.replace('print("y" * 100000)', 'print("full")')

#: Settings that keep the retries quick enough for a test.
QUICK_RETRIES = {"end_retry_inline_s": 0.1, "end_retry_backoff_s": 0.05, "end_retry_max_backoff_s": 0.2}
DEADLINE_S = 60


class SmallDisk:
    """A tmpfs of `size` mounted at `path` (a folder this fixture made)."""

    def __init__(self, path: Path, size: str = "2m"):
        self.path = path
        path.mkdir()
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                                  capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("no mount command here")
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")

    def remount(self, option: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{option}", str(self.path)], check=True, capture_output=True)

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def unmount(self) -> None:
        if subprocess.run(["umount", str(self.path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs, unmounted after the test (after the server on it has
    stopped: fixtures tear down in reverse order)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = SmallDisk(tmp_path / "disk")
    yield disk
    disk.unmount()


@pytest.fixture
def disk_server(small_disk, start_server):
    """Start a live server whose data folder is on the small disk."""

    def start(**settings):
        return start_server(data_dir=small_disk.path / "data", **{**QUICK_RETRIES, **settings})

    return start


def gate_llm(fake_llm, *replies: Reply) -> threading.Event:
    """Answer the LLM's requests with `replies` in order, each only once the
    returned event is set."""
    queue, gate = deque(replies), threading.Event()

    def respond(body):
        assert gate.wait(DEADLINE_S), "the test never opened the LLM's gate"
        return queue.popleft()

    fake_llm.responder = respond
    return gate


def log_lines(store: TaskStore, task_id: str) -> list[dict]:
    """The task's log, line by line: every line must be a whole event."""
    raw = store.events_path(task_id).read_bytes()
    assert raw.endswith(b"\n"), "the log ends with a torn line"
    return [json.loads(line) for line in raw.split(b"\n")[:-1]]


def assert_log_agrees(store: TaskStore, task_id: str) -> list[dict]:
    """Seqs 1..n, one task_end, last of the run, saying what task.json says."""
    events = log_lines(store, task_id)
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    ends = [event for event in events if event["type"] == "task_end"]
    assert len(ends) == 1 and events[-1] is ends[0]
    state = json.loads((store.tasks_dir / task_id / "task.json").read_bytes())
    assert state["status"] == ends[0]["content"]["status"] and state["error"] == ends[0]["content"]["error"]
    return events


def statuses(server) -> dict[str, str]:
    body = requests.get(f"{server.url}/tasks", timeout=10).json()
    return {task_id: task["status"] for task_id, task in body["tasks"].items()}


# -- a task's code fills the disk ---------------------------------------------------------------


def test_code_that_fills_the_disk_ends_every_task_it_stopped_once_space_is_back(disk_server, small_disk, fake_llm):
    server = disk_server(workers=False)
    server.system.start_workers(threads=1)  # one at a time: the other two wait behind the filler
    gate = gate_llm(fake_llm, Reply("Filling.", blocks=[Block("python", FILL_THE_DISK)]), Reply("Done."))
    filler = server.submit("fill the disk")
    queued = [server.submit("queued behind the filler") for _ in range(2)]
    gate.set()  # the filler's code runs only now that the other two wait in the queue

    # The filler's end, and the starts of the two queued tasks, cannot be written.
    wait_until(lambda: set(server.system.runner.pending_ends().waiting()) == {filler, *queued},
               timeout=DEADLINE_S, what="three ends refused by the full disk")
    assert small_disk.free_bytes() == 0
    assert statuses(server) == {filler: "running", queued[0]: "pending", queued[1]: "pending"}

    # Submits meanwhile get 507 and leave nothing behind: no task, no key.
    for headers in ({}, {"Idempotency-Key": "while-full"}):
        response = requests.post(f"{server.url}/tasks", json={"instruction": "no room"}, headers=headers, timeout=10)
        assert response.status_code == 507, response.text
        assert "no space left on device" in response.json()["detail"]
        assert "nothing was stored" in response.json()["detail"]
    assert sorted(p.name for p in server.store.tasks_dir.iterdir() if "-" in p.name) == sorted([filler, *queued])
    # (the warm kernels' slots live beside the workspaces: agent/sandbox/slots.py)
    workspaces = [name for name in os.listdir(server.store.workspaces_dir) if not name.startswith(slots.PREFIX)]
    assert sorted(workspaces) == sorted([filler, *queued])
    assert os.listdir(server.store.root / "idempotency") == []
    assert {json.loads(line)["id"] for line in server.store.index.path.read_bytes().splitlines()} == {filler, *queued}

    (server.store.workspaces_dir / filler / "filler").unlink()  # free the space, as an operator would

    for task_id in (filler, *queued):
        server.wait_for(task_id, timeout=DEADLINE_S)
    assert set(statuses(server).values()) == {"error"}
    task = requests.get(f"{server.url}/tasks/{filler}", timeout=10).json()
    assert task["error"] == LOG_FULL and task["error"].startswith("no space left on the device holding the data folder")
    events = assert_log_agrees(server.store, filler)
    assert [event["type"] for event in events] == ["task_start", "llm_response", "exec_start", "error", "task_end"]
    for task_id in queued:
        task = requests.get(f"{server.url}/tasks/{task_id}", timeout=10).json()
        assert task["error"].startswith("could not start") and "no space left on device" in task["error"]
        assert [event["type"] for event in assert_log_agrees(server.store, task_id)] == ["error", "task_end"]
    assert server.system.runner.pending_ends().waiting() == []

    # The service works again, with no restart.
    assert server.wait_for(server.submit("after the storm"), timeout=DEADLINE_S)["status"] == "completed"


def test_an_end_that_fits_the_log_but_not_task_json_is_adopted_once_space_is_back(disk_server, small_disk, fake_llm):
    server = disk_server()
    fake_llm.script(Reply("Filling.", blocks=[Block("python", FILL_THE_DISK_QUIETLY)]), Reply("Done."))
    task_id = server.submit("fill the disk quietly")

    # Every event, task_end included, fits in the log's last page; the new
    # task.json that would say so does not.
    wait_until(lambda: server.system.runner.pending_ends().waiting() == [task_id], timeout=DEADLINE_S,
               what="the end refused")
    assert requests.get(f"{server.url}/tasks/{task_id}", timeout=10).json()["status"] == "running"
    assert log_lines(server.store, task_id)[-1]["content"]["status"] == "completed"

    (server.store.workspaces_dir / task_id / "filler").unlink()

    task = server.wait_for(task_id, timeout=DEADLINE_S)
    assert task["status"] == "completed" and task["error"] is None
    events = assert_log_agrees(server.store, task_id)
    assert [event["type"] for event in events] == [
        "task_start", "llm_response", "exec_start", "exec_result", "llm_response", "task_end"]
    assert requests.get(f"{server.url}/tasks/{task_id}/result", timeout=10).json()["output"]["answer"] == "Done."


# -- an event larger than the disk ----------------------------------------------------------------


def test_output_larger_than_the_disk_ends_its_task_at_once_and_leaves_no_torn_line(disk_server, small_disk, fake_llm):
    server = disk_server(engine={"output_cap_bytes": 4_000_000})
    fake_llm.script(Reply("Printing.", blocks=[Block("python", "import sys\nsys.stdout.write('z' * 1_600_000)\n")]))
    task_id = server.submit("print 1.6 MB")

    task = server.wait_for(task_id, timeout=DEADLINE_S)
    assert task["status"] == "error" and task["error"] == LOG_FULL
    events = assert_log_agrees(server.store, task_id)
    assert [event["type"] for event in events] == ["task_start", "llm_response", "exec_start", "error", "task_end"]
    # The failed write was cut back: its space is free again.
    assert server.store.events_path(task_id).stat().st_size < 16384
    assert small_disk.free_bytes() > 1_500_000
    assert statuses(server) == {task_id: "error"}


# -- the log itself, on a full disk ----------------------------------------------------------------


def test_a_failed_append_leaves_no_torn_line_and_no_seq_twice_even_after_a_restart(small_disk):
    store = TaskStore(small_disk.path / "data")
    task_id = store.create("x")["task_id"]
    store.append_event(task_id, "task_start", {})
    with pytest.raises(StorageFull, match="no space left on device"):
        store.append_event(task_id, "exec_result", {"stdout": "z" * 3_000_000})
    assert [event["seq"] for event in log_lines(store, task_id)] == [1]
    store.close()

    restarted = TaskStore(small_disk.path / "data")
    assert restarted.append_event(task_id, "error", {"message": "m", "exception": "e"})["seq"] == 2
    assert [event["seq"] for event in log_lines(restarted, task_id)] == [1, 2]
    restarted.close()


# -- a read-only data folder ------------------------------------------------------------------------


def test_submit_to_a_read_only_data_folder_is_503_and_stores_nothing(disk_server, small_disk, fake_llm):
    server = disk_server(workers=False)
    small_disk.remount("ro")
    try:
        response = requests.post(f"{server.url}/tasks", json={"instruction": "nowhere to go"},
                                 headers={"Idempotency-Key": "read-only"}, timeout=10)
        assert response.status_code == 503, response.text
        detail = response.json()["detail"]
        assert "read-only" in detail and "nothing was stored" in detail
        assert [p.name for p in server.store.tasks_dir.iterdir() if "-" in p.name] == []
        assert os.listdir(server.store.root / "idempotency") == []
        assert requests.get(f"{server.url}/tasks", timeout=10).json()["total"] == 0
    finally:
        small_disk.remount("rw")


# -- without a mount ----------------------------------------------------------------------------------


def test_an_event_the_log_refuses_stops_the_task_and_it_ends_saying_why(tmp_path, fake_llm, monkeypatch):
    system = TaskSystem(app_config(tmp_path, fake_llm))
    store = system.store
    fake_llm.script(Reply("Working.", blocks=[Block("python", "print(1)")]), Reply("Done."))
    task_id = store.create("x")["task_id"]
    real = store.append_event

    def append_event(task, kind, content):
        if kind == "exec_result":
            raise StorageReadOnly("cannot append an event: the file system is read-only")
        return real(task, kind, content)

    monkeypatch.setattr(store, "append_event", append_event)
    system.runner.run(task_id)
    state = store.get(task_id)
    assert state["status"] == "error" and state["error"] == LOG_READ_ONLY
    assert len(fake_llm.requests) == 1  # stopped at once: the model was not asked again
    events = assert_log_agrees(store, task_id)
    assert [event["type"] for event in events] == ["task_start", "llm_response", "exec_start", "error", "task_end"]


def test_a_cursor_reads_a_line_that_was_cut_back_and_written_again_once(tmp_path):
    store = TaskStore(tmp_path)
    task_id = store.create("x")["task_id"]
    store.append_event(task_id, "task_start", {})
    path = store.events_path(task_id)
    with store.follow_events(task_id) as cursor:
        assert [event["seq"] for event in cursor.poll()] == [1]
        size = path.stat().st_size
        with open(path, "ab") as log:
            log.write(b'{"seq":2,"type":"exec_result","timestamp":"x","content":{"stdout":"half')
        assert cursor.poll() == []  # held back: no newline yet
        os.truncate(path, size)  # the writer failed midway and cut its line back
        store.append_event(task_id, "error", {"message": "m", "exception": "e"})
        assert [(event["seq"], event["type"]) for event in cursor.poll()] == [(2, "error")]
    store.close()


def test_an_end_decided_before_a_start_does_not_end_the_run_that_started_since(tmp_path):
    store = TaskStore(tmp_path)
    task_id = store.create("x")["task_id"]
    store.transition(task_id, "running")  # another worker started it once space was back
    with pytest.raises(InvalidTransition):
        store.finish(task_id, end_content("error", "could not start"), error="could not start", expect="pending")
    assert store.get(task_id)["status"] == "running" and store.read_events(task_id) == []
    store.close()


def test_pending_ends_hold_at_most_max_tasks_and_one_end_per_task(tmp_path):
    store = TaskStore(tmp_path)
    # Its thread waits a minute before its first round, or until the process stops.
    pending = PendingEnds(store, EndRetry(backoff_s=60, max_tasks=1), lambda task_id: None, threading.Event())
    first, second = (store.create(name)["task_id"] for name in ("first", "second"))
    assert pending.add(first, end_content("error", "e"), "e")
    assert not pending.add(second, end_content("error", "e"), "e")
    assert pending.add(first, end_content("cancelled"), None)  # the first end handed over stands
    assert pending.waiting() == [first]
    pending.stopping.set()  # one last round, then the thread stops
    wait_until(lambda: pending.waiting() == [], timeout=DEADLINE_S, what="the last round")
    assert store.get(first)["status"] == "error" and store.get(second)["status"] == "pending"
    store.close()


def test_a_logged_end_the_state_cannot_take_is_left_for_an_operator(tmp_path):
    store = TaskStore(tmp_path)
    task_id = store.create("x")["task_id"]
    store.append_event(task_id, "task_end", {"status": "completed", "error": None})  # hand-written: never ran
    with pytest.raises(InvalidTransition):
        store.finish(task_id, end_content("completed"))
    assert store.get(task_id)["status"] == "pending"
    assert store.end_task(task_id, "error", error="x")["status"] == "error"  # an end it can take still works
    store.close()


def test_a_key_that_cannot_be_stored_takes_its_new_task_with_it(start_server, monkeypatch):
    server = start_server(workers=False)

    def claim(key, task_id):  # the disk fills up between the task and its key
        raise storage_error("record the idempotency key", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    monkeypatch.setattr(server.system.keys, "claim", claim)
    response = requests.post(f"{server.url}/tasks", json={"instruction": "x"}, headers={"Idempotency-Key": "k"},
                             timeout=10)
    assert response.status_code == 507 and "nothing was stored" in response.json()["detail"]
    assert [p.name for p in server.store.tasks_dir.iterdir() if "-" in p.name] == []
    assert os.listdir(server.store.workspaces_dir) == []
    assert requests.get(f"{server.url}/tasks", timeout=10).json()["total"] == 0


def test_a_finished_state_whose_log_lacks_its_task_end_gets_one_when_ended_again(tmp_path):
    store = TaskStore(tmp_path)
    task_id = store.create("x")["task_id"]
    path = store.tasks_dir / task_id / "task.json"
    state = json.loads(path.read_bytes())
    path.write_text(json.dumps({**state, "status": "error", "error": "by hand", "completed_at": state["created_at"]}))
    assert store.end_task(task_id, "error", error="again")["error"] == "by hand"  # finished: unchanged
    assert [(event["type"], event["content"]["status"], event["content"]["error"])
            for event in store.read_events(task_id)] == [("task_end", "error", "by hand")]
    store.close()
