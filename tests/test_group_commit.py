"""Group commit (storage/group_commit.py): appends from many threads at once
are written together, nobody returns before their data is written, and a
failed write fails exactly the callers whose data it carried."""

from __future__ import annotations

import threading

import pytest

from storage.group_commit import GroupCommit


class SlowSink:
    """Records each write; the first write waits until `release` is set, so
    that the other threads queue behind it."""

    def __init__(self, fail_on: bytes | None = None):
        self.writes: list[bytes] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, data: bytes) -> None:
        if not self.writes:
            self.entered.set()
            assert self.release.wait(30)
        self.writes.append(data)
        if self.fail_on is not None and self.fail_on in data:
            raise OSError(28, "No space left on device")


def run_all(commit: GroupCommit, sink: SlowSink, first: bytes, others: list[bytes]) -> dict[bytes, object]:
    """`first` appended alone (its write holds the sink), then `others` from
    one thread each while it does; each caller's outcome: None or the error."""
    outcomes: dict[bytes, object] = {}

    def append(data: bytes) -> None:
        try:
            commit.append(data)
            outcomes[data] = None
        except OSError as exc:
            outcomes[data] = exc

    leader = threading.Thread(target=append, args=(first,))
    leader.start()
    assert sink.entered.wait(30)
    threads = [threading.Thread(target=append, args=(data,)) for data in others]
    for thread in threads:
        thread.start()
    # Every follower has joined the next batch once it waits on the
    # condition; only then may the first write end.
    pending = commit._next  # the batch the followers join
    while len(pending.parts) < len(others):
        threading.Event().wait(0.001)
    sink.release.set()
    for thread in [leader, *threads]:
        thread.join(30)
    return outcomes


def test_appends_made_during_a_write_go_out_together_in_the_next_one():
    sink = SlowSink()
    commit = GroupCommit(sink)
    others = [f"line {n}\n".encode() for n in range(20)]
    outcomes = run_all(commit, sink, b"first\n", others)
    assert outcomes == {data: None for data in [b"first\n", *others]}
    assert sink.writes[0] == b"first\n"
    assert len(sink.writes) == 2 and sorted(sink.writes[1].splitlines(keepends=True)) == sorted(others)


def test_a_failed_write_fails_the_callers_it_carried_and_no_other():
    sink = SlowSink(fail_on=b"line 3")
    commit = GroupCommit(sink)
    others = [f"line {n}\n".encode() for n in range(8)]
    outcomes = run_all(commit, sink, b"first\n", others)
    assert outcomes[b"first\n"] is None
    assert all(isinstance(outcomes[data], OSError) for data in others)
    commit.append(b"after\n")  # the next batch is written as usual
    assert sink.writes[-1] == b"after\n"


def test_an_append_alone_is_written_at_once():
    writes: list[bytes] = []
    commit = GroupCommit(writes.append)
    commit.append(b"one\n")
    assert writes == [b"one\n"]
    with pytest.raises(ZeroDivisionError):
        GroupCommit(lambda data: 1 / 0).append(b"x")
