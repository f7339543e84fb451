"""The file-based task store: layout, ids, event log, state machine, result
shape, listing index (across store instances as across processes), cleanup,
disk-full behaviour and what a listing reads at scale. The data folder's
layout itself (workspaces, modes, upgrade) is in test_storage_layout.py."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import re
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from storage import FINISHED, STATUSES, InvalidTransition, StorageError, TaskNotFound, TaskStore, utc_now_iso
from storage import files as storage_files
from storage.index import TaskIndex

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# -- helpers -----------------------------------------------------------------------

_SEEN: list | None = None
_WATCHED = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree"}


def _audit(event: str, args: tuple) -> None:
    if _SEEN is not None and event in _WATCHED:
        _SEEN.append((event, str(args[0]) if args else ""))


sys.addaudithook(_audit)


@contextmanager
def file_activity():
    """Record every open / listdir / mkdir / rename / remove made meanwhile."""
    global _SEEN
    _SEEN = seen = []
    try:
        yield seen
    finally:
        _SEEN = None


class Clock:
    """A clock that moves 1 ms per reading, so creation order is strict."""

    def __init__(self, start: datetime = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)):
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    s = TaskStore(tmp_path, clock=clock)
    yield s
    s.close()


def at_status(store: TaskStore, status: str) -> str:
    """A new task brought to `status` by allowed transitions."""
    task_id = store.create("do it")["task_id"]
    if status == "pending":
        return task_id
    if status == "cancelled":
        store.request_cancel(task_id)
        return task_id
    store.transition(task_id, "running")
    if status != "running":
        store.transition(task_id, status)
    return task_id


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def index_lines(store: TaskStore) -> list[dict]:
    return [json.loads(line) for line in store.index.path.read_bytes().splitlines()]


# -- create / get / ids ----------------------------------------------------------------


def test_create_then_get_round_trips_the_full_state(store):
    state = store.create("count lines", {"source": "n8n"}, {"llm": "fake"}, extra={"idempotency_key": "k1"})
    assert store.get(state["task_id"]) == state
    assert state == {
        "task_id": state["task_id"], "instruction": "count lines", "status": "pending",
        "created_at": "2024-01-01T12:00:00.001Z", "started_at": None, "completed_at": None, "error": None,
        "metadata": {"source": "n8n"}, "options": {"llm": "fake"}, "context": {}, "cancel_requested": False,
        "idempotency_key": "k1",
    }
    assert str(uuid.UUID(state["task_id"])) == state["task_id"]


def test_create_lays_out_folder_with_empty_log_and_state_and_a_workspace_apart(store):
    task_id = store.create("x")["task_id"]
    folder = store.root / "tasks" / task_id
    assert store.workspace(task_id) == store.root / "workspaces" / task_id and store.workspace(task_id).is_dir()
    assert not (folder / "workspace").exists()
    assert store.events_path(task_id) == folder / "events.jsonl"
    assert (folder / "events.jsonl").read_bytes() == b""
    assert json.loads((folder / "task.json").read_text())["task_id"] == task_id


def test_extra_may_not_replace_the_stores_own_fields(store):
    with pytest.raises(ValueError, match="status"):
        store.create("x", extra={"status": "completed"})
    assert store.list() == ([], 0)


def test_utc_now_iso_has_milliseconds_and_z():
    assert TS.match(utc_now_iso())


BAD_IDS = ["../etc", "abc", "", "../" + "0" * 33, "0" * 36, "{12345678-1234-4234-8234-123456789abc}",
           "12345678123442348234123456789abc", "12345678-1234-4234-8234-123456789abc\n",
           "12345678-1234-4234-8234-123456789ab/", "１2345678-1234-4234-8234-123456789abc", None, 42]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_non_uuid_ids_are_not_found_and_touch_no_path(store, bad):
    store.create("x")
    before = tree(store.root)
    calls = [
        lambda: store.get(bad), lambda: store.workspace(bad), lambda: store.events_path(bad),
        lambda: store.append_event(bad, "error", {}), lambda: store.read_events(bad),
        lambda: store.transition(bad, "running"), lambda: store.request_cancel(bad),
        lambda: store.is_cancel_requested(bad), lambda: store.end_task(bad, "error", error="x"),
        lambda: store.result(bad), lambda: store.delete(bad),
    ]
    for call in calls:
        with file_activity() as seen, pytest.raises(TaskNotFound) as caught:
            call()
        assert seen == [] and caught.value.task_id == bad
    assert tree(store.root) == before


def test_unknown_uuid_is_not_found(store):
    with pytest.raises(TaskNotFound):
        store.get(str(uuid.uuid4()))


def test_uppercase_id_names_the_same_task(store):
    task_id = store.create("x")["task_id"]
    assert store.get(task_id.upper())["task_id"] == task_id
    store.append_event(task_id.upper(), "task_start", {})
    assert [e["seq"] for e in store.read_events(task_id)] == [1]


# -- event log ----------------------------------------------------------------------------


def test_event_line_has_seq_type_timestamp_content(store):
    task_id = store.create("x")["task_id"]
    event = store.append_event(task_id, "task_start", {"instruction": "x", "task_id": task_id})
    line = json.loads(store.events_path(task_id).read_text())
    assert line == event == {"seq": 1, "type": "task_start", "timestamp": line["timestamp"],
                             "content": {"instruction": "x", "task_id": task_id}}
    assert TS.match(line["timestamp"])


def test_seq_has_no_gaps_with_8_threads_appending(store):
    task_id = store.create("x")["task_id"]

    def worker(n):
        for i in range(50):
            store.append_event(task_id, "llm_response", {"thread": n, "i": i})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e["seq"] for e in store.read_events(task_id)] == list(range(1, 401))


def _append_from_another_process(root: str, task_id: str, n: int) -> None:
    store = TaskStore(root)
    for i in range(n):
        store.append_event(task_id, "exec_start", {"pid": os.getpid(), "i": i})


def test_seq_has_no_gaps_with_2_processes_appending(store):
    task_id = store.create("x")["task_id"]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_from_another_process, args=(str(store.root), task_id, 150)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    events = store.read_events(task_id)
    assert [e["seq"] for e in events] == list(range(1, 301))
    assert len({e["content"]["pid"] for e in events}) == 2


def test_read_events_skips_a_torn_last_line(store):
    task_id = store.create("x")["task_id"]
    store.append_event(task_id, "task_start", {})
    store.append_event(task_id, "llm_response", {})
    with open(store.events_path(task_id), "ab") as f:
        f.write(b'{"seq": 3, "type": "exec_st')
    assert [e["seq"] for e in store.read_events(task_id)] == [1, 2]


def test_append_after_a_torn_line_cuts_it_off_and_continues_seq(store):
    task_id = store.create("x")["task_id"]
    store.append_event(task_id, "task_start", {})
    with open(store.events_path(task_id), "ab") as f:
        f.write(b'{"seq": 2, "type": "exec_st')
    event = store.append_event(task_id, "error", {"message": "m", "exception": "e"})
    assert event["seq"] == 2
    lines = store.events_path(task_id).read_bytes().split(b"\n")
    assert [json.loads(line)["seq"] for line in lines[:-1]] == [1, 2] and lines[-1] == b""
    assert [e["type"] for e in store.read_events(task_id)] == ["task_start", "error"]


def test_read_events_after_returns_only_later_events(store):
    task_id = store.create("x")["task_id"]
    for _ in range(5):
        store.append_event(task_id, "llm_response", {})
    assert [e["seq"] for e in store.read_events(task_id, after=3)] == [4, 5]


def test_seq_continues_after_events_longer_than_the_tail_block(store):
    task_id = store.create("x")["task_id"]
    for _ in range(3):
        store.append_event(task_id, "exec_result", {"result": {"output": "y" * 100_000}})
    assert store.append_event(task_id, "task_end", {})["seq"] == 4


# -- state machine ------------------------------------------------------------------------

ALLOWED = [("pending", "running"), ("pending", "cancelled"), ("pending", "error"),
           ("running", "completed"), ("running", "error"), ("running", "cancelled")]
FORBIDDEN = [(a, b) for a in STATUSES for b in STATUSES + ("bogus",) if (a, b) not in ALLOWED]


@pytest.mark.parametrize("current,target", ALLOWED)
def test_allowed_transition_succeeds(store, current, target):
    task_id = at_status(store, current)
    state = store.transition(task_id, target)
    assert state["status"] == target == store.get(task_id)["status"]


@pytest.mark.parametrize("current,target", FORBIDDEN)
def test_forbidden_transition_raises_and_changes_nothing(store, current, target):
    task_id = at_status(store, current)
    before = store.get(task_id)
    with pytest.raises(InvalidTransition) as caught:
        store.transition(task_id, target)
    assert (caught.value.task_id, caught.value.current, caught.value.target) == (task_id, current, target)
    assert store.get(task_id) == before


def test_transition_sets_times_error_and_merges_context(store):
    task_id = store.create("x")["task_id"]
    running = store.transition(task_id, "running", context={"llm": "fake", "model": "m1"})
    assert TS.match(running["started_at"]) and running["completed_at"] is None
    done = store.transition(task_id, "error", error="LLM unreachable", context={"rounds": 2})
    assert done["completed_at"] > done["started_at"]
    assert done["error"] == "LLM unreachable"
    assert done["context"] == {"llm": "fake", "model": "m1", "rounds": 2}


# -- cancel and end_task ----------------------------------------------------------------


def test_request_cancel_on_pending_cancels_and_logs_task_end(store):
    task_id = store.create("x")["task_id"]
    state = store.request_cancel(task_id)
    assert state["status"] == "cancelled" and TS.match(state["completed_at"])
    [event] = store.read_events(task_id)
    assert event["type"] == "task_end"
    assert event["content"] == {"status": "cancelled", "answer": None, "error": None, "rounds": 0,
                                "duration_ms": 0, "usage": {"input_tokens": 0, "output_tokens": 0}}


def test_request_cancel_on_running_sets_the_flag_only(store, tmp_path, clock):
    task_id = at_status(store, "running")
    assert store.is_cancel_requested(task_id) is False
    state = TaskStore(tmp_path, clock=clock).request_cancel(task_id)  # as the web process would
    assert state["status"] == "running" and state["cancel_requested"] is True
    assert store.is_cancel_requested(task_id) is True
    assert store.read_events(task_id) == []


def test_is_cancel_requested_reads_nothing_while_the_state_is_unchanged(store):
    task_id = at_status(store, "running")
    store.is_cancel_requested(task_id)
    with file_activity() as seen:
        assert store.is_cancel_requested(task_id) is False
    assert seen == []


@pytest.mark.parametrize("finished", sorted(FINISHED))
def test_request_cancel_on_finished_raises(store, finished):
    task_id = at_status(store, finished)
    with pytest.raises(InvalidTransition) as caught:
        store.request_cancel(task_id)
    assert caught.value.current == finished


def test_end_task_from_running_logs_error_and_task_end(store):
    task_id = at_status(store, "running")
    store.append_event(task_id, "task_start", {})
    state = store.end_task(task_id, "error", error="interrupted")
    assert state["status"] == "error" and state["error"] == "interrupted"
    events = store.read_events(task_id)
    assert [e["type"] for e in events] == ["task_start", "error", "task_end"]
    assert events[1]["content"] == {"message": "interrupted", "exception": "interrupted"}
    assert events[2]["content"]["status"] == "error" and events[2]["content"]["error"] == "interrupted"


def test_end_task_from_pending_works(store):
    task_id = store.create("x")["task_id"]
    assert store.end_task(task_id, "error", error="no such llm")["status"] == "error"
    assert [e["type"] for e in store.read_events(task_id)] == ["error", "task_end"]


def test_end_task_adopts_the_status_of_a_task_end_already_in_the_log(store):
    task_id = at_status(store, "running")
    store.append_event(task_id, "task_end", {"status": "completed", "answer": "42", "error": None})
    assert store.end_task(task_id, "error", error="late")["status"] == "completed"
    assert [e["type"] for e in store.read_events(task_id)] == ["task_end"]


def test_end_task_on_finished_task_returns_it_unchanged(store):
    task_id = at_status(store, "completed")
    before = store.get(task_id)
    assert store.end_task(task_id, "error", error="x") == before
    assert [(e["type"], e["content"]["status"]) for e in store.read_events(task_id)] == [("task_end", "completed")]


def test_end_task_rejects_a_status_that_is_not_finished(store):
    with pytest.raises(ValueError):
        store.end_task(store.create("x")["task_id"], "running")


def test_end_task_to_completed_from_pending_is_invalid_and_logs_nothing(store):
    task_id = store.create("x")["task_id"]
    with pytest.raises(InvalidTransition):
        store.end_task(task_id, "completed")
    assert store.read_events(task_id) == []


# -- result ---------------------------------------------------------------------------------


def test_result_has_the_spec_shape_from_a_realistic_log(store):
    task_id = store.create("Count lines in .txt files", {"source": "n8n", "workflow_id": "w1"})["task_id"]
    store.transition(task_id, "running", context={"llm": "fake", "model": "m1"})
    log = [
        ("task_start", {"instruction": "Count lines in .txt files", "task_id": task_id}),
        ("llm_response", {"llm": "m1", "message": "I'll write a script", "round": 1,
                          "usage": {"input_tokens": 10, "output_tokens": 5}}),
        ("exec_start", {"block_name": "count_lines.py", "language": "python", "code": "print(3)"}),
        ("exec_result", {"block_name": "count_lines.py", "language": "python",
                         "result": {"status": "success", "output": "3\n", "stdout": "3\n", "stderr": "",
                                    "returncode": 0, "duration_ms": 12}}),
        ("exec_start", {"block_name": "block-2", "language": "bash", "code": "false"}),
        ("exec_result", {"block_name": "block-2", "language": "bash",
                         "result": {"status": "error", "output": "", "returncode": 1}}),
        ("error", {"message": "block-2 failed", "exception": "CalledProcessError: 1"}),
        ("llm_response", {"llm": "m1", "message": "There are 3 lines.", "round": 2}),
        ("task_end", {"status": "completed", "answer": "There are 3 lines.", "error": None, "rounds": 2,
                      "duration_ms": 40, "usage": {"input_tokens": 20, "output_tokens": 9}}),
    ]
    events = [store.append_event(task_id, kind, content) for kind, content in log]
    final = store.transition(task_id, "completed")
    assert store.result(task_id) == {
        "task_id": task_id, "instruction": "Count lines in .txt files", "status": "completed",
        "created_at": final["created_at"], "started_at": final["started_at"],
        "completed_at": final["completed_at"], "error": None,
        "output": {
            "messages": [{"type": e["type"], "content": e["content"], "timestamp": e["timestamp"]} for e in events],
            "results": [
                {"block_name": "count_lines.py", "language": "python", "result": log[3][1]["result"]},
                {"block_name": "block-2", "language": "bash", "result": log[5][1]["result"]},
            ],
            "errors": [{"message": "block-2 failed", "exception": "CalledProcessError: 1"}],
            "metadata": {"source": "n8n", "workflow_id": "w1", "instruction": "Count lines in .txt files",
                         "llm": "fake", "model": "m1"},
            "answer": "There are 3 lines.",
            "callback": None,
        },
    }


def test_result_of_a_pending_task_has_empty_output(store):
    task_id = store.create("x")["task_id"]
    output = store.result(task_id)["output"]
    assert output == {"messages": [], "results": [], "errors": [], "metadata": {"instruction": "x"}, "answer": None,
                      "callback": None}


# -- listing -------------------------------------------------------------------------------------

SUMMARY_KEYS = {"task_id", "instruction", "status", "created_at", "started_at", "completed_at"}


def test_list_is_newest_first_with_summaries(store):
    ids = [store.create(f"t{i}")["task_id"] for i in range(5)]
    page, total = store.list()
    assert [t["task_id"] for t in page] == ids[::-1] and total == 5
    assert all(set(t) == SUMMARY_KEYS for t in page)
    assert page[0]["instruction"] == "t4"


def test_list_filters_by_status_and_counts_matches(store):
    running = [at_status(store, "running") for _ in range(3)]
    at_status(store, "completed")
    store.create("p")
    page, total = store.list(status="running")
    assert [t["task_id"] for t in page] == running[::-1] and total == 3
    assert store.list(status="cancelled") == ([], 0)


def test_list_paginates_with_limit_and_offset(store):
    ids = [store.create(f"t{i}")["task_id"] for i in range(10)][::-1]
    page, total = store.list(limit=3, offset=4)
    assert [t["task_id"] for t in page] == ids[4:7] and total == 10
    assert store.list(limit=3, offset=9)[0][0]["task_id"] == ids[9]
    assert store.list(limit=3, offset=10) == ([], 10)
    assert store.list(limit=0) == ([], 10)


def test_list_paginates_within_a_status(store):
    done = [at_status(store, "completed") for _ in range(6)][::-1]
    store.create("pending one")
    page, total = store.list(status="completed", limit=2, offset=3)
    assert [t["task_id"] for t in page] == done[3:5] and total == 6


def test_list_rejects_unknown_status(store):
    with pytest.raises(ValueError):
        store.list(status="done")


def test_another_store_sees_creates_transitions_and_deletes_without_restart(store, tmp_path):
    other = TaskStore(tmp_path)  # another process would open the same root
    assert other.list() == ([], 0)
    a, b = store.create("a")["task_id"], store.create("b")["task_id"]
    assert [t["task_id"] for t in other.list()[0]] == [b, a]
    store.transition(a, "running")
    assert [t["task_id"] for t in other.list(status="running")[0]] == [a]
    store.delete(b)
    assert other.list() == ([{k: other.get(a)[k] for k in SUMMARY_KEYS}], 1)
    assert other.ids_with_status("running") == [a]
    other.close()


def _create_from_another_process(root: str, count: int) -> None:
    store = TaskStore(root)
    for i in range(count):
        task_id = store.create(f"from {os.getpid()} #{i}")["task_id"]
        store.transition(task_id, "running")
        if i % 2:
            store.transition(task_id, "completed")


def test_two_processes_creating_at_once_are_all_listed_by_a_loaded_store(store, tmp_path):
    assert store.list() == ([], 0)  # loaded before the others write
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_create_from_another_process, args=(str(tmp_path), 60)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    page, total = store.list(limit=500)
    assert total == 120 and len({t["task_id"] for t in page}) == 120
    assert store.list(status="completed")[1] == 60 and store.list(status="running")[1] == 60
    assert len(index_lines(store)) == 120 + 120 + 60  # every line whole and valid


def test_listing_while_threads_create_sees_a_consistent_index(store):
    stop, errors = threading.Event(), []

    def lister():
        while not stop.is_set():
            try:
                page, total = store.list(limit=10)
                assert len(page) == min(total, 10)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    def creator():
        for _ in range(50):
            store.create("x")

    reader = threading.Thread(target=lister)
    reader.start()
    writers = [threading.Thread(target=creator) for _ in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert errors == [] and store.list()[1] == 200


def test_ids_with_status_returns_oldest_first(store):
    running = [at_status(store, "running") for _ in range(2)]
    pending = [store.create("p")["task_id"] for _ in range(2)]
    at_status(store, "completed")
    assert store.ids_with_status("pending") == pending
    assert store.ids_with_status("running") == running
    assert store.ids_with_status("pending", "running") == running + pending


def _transition_losing_its_index_record(store, monkeypatch, task_id, target):
    def disk_full(records):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.index, "append", disk_full)
    store.transition(task_id, target)  # the state is written; its index record is lost
    monkeypatch.undo()


def test_list_repairs_an_index_that_lags_a_transition(store, monkeypatch, tmp_path):
    task_id = store.create("x")["task_id"]
    _transition_losing_its_index_record(store, monkeypatch, task_id, "running")
    other = TaskStore(tmp_path)
    page, total = other.list()
    assert [(t["task_id"], t["status"]) for t in page] == [(task_id, "running")] and total == 1
    assert other.list(status="pending") == ([], 0)
    assert [t["task_id"] for t in other.list(status="running")[0]] == [task_id]
    other.close()


def test_ids_with_status_finds_a_task_whose_index_lags(store, monkeypatch, tmp_path):
    task_id = store.create("x")["task_id"]
    _transition_losing_its_index_record(store, monkeypatch, task_id, "running")
    other = TaskStore(tmp_path)
    assert other.ids_with_status("pending") == []
    assert other.ids_with_status("running") == [task_id]
    other.close()


def test_a_stale_index_record_never_moves_a_status_back(store, tmp_path):
    task_id = at_status(store, "completed")
    state = store.get(task_id)
    # e.g. a reader's repair that read task.json just before the transition
    store.index.append([{"id": task_id, "status": "running", "created_at": state["created_at"], "completed_at": None}])
    other = TaskStore(tmp_path)
    assert other.index.ids_with(["completed"]) == [(task_id, "completed")]
    assert store.index.ids_with(["running"]) == []
    other.close()


# -- the index file -----------------------------------------------------------------------------


def test_index_is_rebuilt_when_deleted(store, tmp_path):
    ids = [at_status(store, s) for s in ("pending", "running", "completed")]
    store.list()
    store.index.path.unlink()
    late = store.create("made while the index is missing")["task_id"]
    assert [t["task_id"] for t in store.list()[0]] == [late] + ids[::-1]
    assert store.index.path.exists()
    fresh = TaskStore(tmp_path)
    assert fresh.list()[1] == 4 and fresh.ids_with_status("running") == [ids[1]]
    fresh.close()


@pytest.mark.parametrize("garbage", [b"not json\n", b'{"id": "nope", "status": "pending"}\n', b"\xff\xfe\n"])
def test_index_is_rebuilt_when_corrupted(store, tmp_path, garbage):
    ids = [at_status(store, s) for s in ("pending", "completed")]
    store.list()
    with open(store.index.path, "ab") as f:
        f.write(garbage)
    more = store.create("after the damage")["task_id"]
    fresh = TaskStore(tmp_path)
    assert [t["task_id"] for t in fresh.list()[0]] == [more] + ids[::-1]
    assert [t["task_id"] for t in store.list()[0]] == [more] + ids[::-1]  # the loaded instance too
    assert all(line["id"] in ids + [more] for line in index_lines(store))
    fresh.close()


def test_torn_index_line_from_a_dead_writer_does_not_lose_later_records(store, tmp_path):
    first = store.create("x")["task_id"]
    with open(store.index.path, "ab") as f:
        f.write(b'{"id": "torn')
    second = store.create("y")["task_id"]
    fresh = TaskStore(tmp_path)
    assert [t["task_id"] for t in fresh.list()[0]] == [second, first]
    fresh.close()


def test_folder_missing_from_the_index_is_listed_and_vanished_folder_dropped(store, tmp_path):
    kept = store.create("kept")["task_id"]
    gone = store.create("gone")["task_id"]
    store.index.path.write_bytes(b"".join(
        line for line in store.index.path.read_bytes().splitlines(keepends=True) if kept.encode() not in line))
    os.rename(store.root / "tasks" / gone, store.root / "elsewhere")  # as if a delete lost its record
    fresh = TaskStore(tmp_path)
    assert [t["task_id"] for t in fresh.list()[0]] == [kept]
    assert fresh.list()[1] == 1
    fresh.close()


def test_interrupted_create_leftover_is_removed_once_old(store, tmp_path):
    old, young = str(uuid.uuid4()), str(uuid.uuid4())
    for task_id in (old, young):
        (store.tasks_dir / task_id).mkdir()
        (store.workspaces_dir / task_id).mkdir()
    os.utime(store.tasks_dir / old, (time.time() - 3600, time.time() - 3600))
    fresh = TaskStore(tmp_path)
    assert fresh.list() == ([], 0)
    assert not (store.tasks_dir / old).exists() and not (store.workspaces_dir / old).exists()
    assert (store.tasks_dir / young).exists() and (store.workspaces_dir / young).exists()
    fresh.close()


def test_compaction_rewrites_the_index_and_readers_follow(store, tmp_path, clock, monkeypatch):
    monkeypatch.setattr(TaskIndex, "COMPACT_SLACK", 5)
    done = [at_status(store, "completed") for _ in range(10)]
    alive = store.create("alive")["task_id"]
    other = TaskStore(tmp_path)
    assert other.list()[1] == 11
    inode = store.index.path.stat().st_ino
    clock.advance(hours=25)
    assert store.delete_finished_older_than(24) == 10
    assert store.index.path.stat().st_ino != inode
    assert [line["id"] for line in index_lines(store)] == [alive]
    newer = store.create("newer")["task_id"]
    assert [t["task_id"] for t in other.list()[0]] == [newer, alive]
    assert all(not (store.root / "tasks" / t).exists() for t in done)
    other.close()


# -- cleanup, delete, health ----------------------------------------------------------------------


def test_cleanup_deletes_only_old_finished_tasks(store, clock, tmp_path):
    old = [at_status(store, s) for s in ("completed", "error", "cancelled")]
    old_running, old_pending = at_status(store, "running"), store.create("p")["task_id"]
    clock.advance(hours=20)
    young = at_status(store, "completed")
    clock.advance(hours=5)
    other = TaskStore(tmp_path)
    assert other.list()[1] == 6
    assert store.delete_finished_older_than(24) == 3
    for task_id in old:
        with pytest.raises(TaskNotFound):
            store.get(task_id)
    assert {t["task_id"] for t in other.list()[0]} == {old_running, old_pending, young}
    assert list((store.root / "trash").iterdir()) == []
    assert store.delete_finished_older_than(24) == 0
    other.close()


def test_delete_removes_a_task_whatever_its_status(store, tmp_path):
    task_id = at_status(store, "running")
    store.delete(task_id)
    with pytest.raises(TaskNotFound):
        store.get(task_id)
    with pytest.raises(TaskNotFound):
        store.delete(task_id)
    assert store.list() == ([], 0)


def test_check_passes_on_a_writable_root_and_fails_without_it(store):
    store.check()
    os.rename(store.root / "tasks", store.root / "moved")
    with pytest.raises(StorageError, match="missing"):
        store.check()


# -- disk full ------------------------------------------------------------------------------------


def _full_disk_on_write(monkeypatch, nth: int, partial: bool = False) -> None:
    real = storage_files.write_all
    calls = {"n": 0}

    def write_all(fd, data):
        calls["n"] += 1
        if calls["n"] == nth:
            if partial:
                os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(storage_files, "write_all", write_all)


@pytest.mark.parametrize("nth,partial", [(1, False), (1, True), (2, False), (2, True)],
                         ids=["task.json", "task.json-half", "index", "index-half"])
def test_disk_full_during_create_leaves_no_torn_task(store, tmp_path, monkeypatch, nth, partial):
    kept = store.create("before")["task_id"]
    _full_disk_on_write(monkeypatch, nth, partial)
    with pytest.raises(StorageError, match="no space left on device") as caught:
        store.create("doomed")
    assert "free disk space" in str(caught.value)
    monkeypatch.undo()
    assert sorted(p.name for p in (store.root / "tasks").iterdir() if "-" in p.name) == [kept]
    assert os.listdir(store.workspaces_dir) == [kept] and list((store.root / "trash").iterdir()) == []
    later = store.create("after")["task_id"]
    fresh = TaskStore(tmp_path)
    assert [t["task_id"] for t in fresh.list()[0]] == [later, kept]
    assert [t["task_id"] for t in store.list()[0]] == [later, kept]
    fresh.close()


def test_disk_full_during_append_event_is_a_clear_error_and_log_stays_readable(store, monkeypatch):
    task_id = store.create("x")["task_id"]
    store.append_event(task_id, "task_start", {})
    _full_disk_on_write(monkeypatch, 1, partial=True)
    with pytest.raises(StorageError, match="no space left on device"):
        store.append_event(task_id, "llm_response", {"message": "m" * 1000})
    monkeypatch.undo()
    assert [e["seq"] for e in store.read_events(task_id)] == [1]
    assert store.append_event(task_id, "task_end", {})["seq"] == 2


def test_disk_full_during_transition_keeps_the_old_state(store, monkeypatch):
    task_id = store.create("x")["task_id"]
    _full_disk_on_write(monkeypatch, 1)
    with pytest.raises(StorageError, match="no space left on device"):
        store.transition(task_id, "running")
    monkeypatch.undo()
    assert store.get(task_id)["status"] == "pending"
    assert [p.name for p in (store.root / "tasks" / task_id).iterdir() if p.name.endswith(".tmp")] == []


# -- scale ----------------------------------------------------------------------------------------


def test_list_reads_only_the_pages_task_files_among_2000_tasks(store, tmp_path):
    ids = [store.create(f"task {i}")["task_id"] for i in range(2000)][::-1]
    cold = TaskStore(tmp_path)  # a process that just started
    for instance in (cold, cold, store):
        with file_activity() as seen:
            page, total = instance.list(limit=20, offset=500)
        task_files = [path for event, path in seen if event == "open" and path.endswith("task.json")]
        assert total == 2000 and [t["task_id"] for t in page] == ids[500:520]
        assert sorted(Path(p).parent.name for p in task_files) == sorted(ids[500:520])
        assert not [path for event, path in seen if event == "open" and path.endswith("events.jsonl")]
    with file_activity() as seen:
        cold.list(status="pending", limit=5)
        cold.ids_with_status("running")
    assert not [e for e in seen if e[0] in ("os.listdir", "os.scandir")]
    cold.close()
