"""Sharing metrics between processes through the data folder
(actors/metrics_files.py), with each process played by its own
`MetricsFolder` on one folder: a dead process's counts stay in the sum and
are then folded into the retired totals, a stalled one counts nothing twice,
a clean stop hands its counts over, and odd files never break a scrape.
Time is the folders' injected clock, moved past retire_after_s."""

from __future__ import annotations

import json
import os
import time

from actors.metrics import TASKS_SUBMITTED, TaskMetrics
from actors.metrics_files import RETIRED, MetricsFolder, MetricsPublisher

RETIRE_AFTER_S = 300.0


class Later:
    """A clock `offset` seconds ahead of the real one (the files' mtimes are real)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def submitted(counts: dict) -> float:
    return counts.get(TASKS_SUBMITTED.name, {}).get((), [0.0])[0]


def a_process(tmp_path, clock=time.time) -> tuple[MetricsFolder, TaskMetrics]:
    return MetricsFolder(tmp_path, retire_after_s=RETIRE_AFTER_S, clock=clock), TaskMetrics()


def test_a_dead_processs_counts_stay_in_the_sum_then_move_to_the_retired_totals(tmp_path):
    clock = Later()
    web, web_metrics = a_process(tmp_path, clock)
    worker, worker_metrics = a_process(tmp_path)
    web_metrics.task_submitted()
    worker_metrics.task_submitted()
    worker_metrics.task_submitted()
    worker.publish(worker_metrics.tally.snapshot())  # and then the worker is killed

    total, processes = web.total(web_metrics.tally.snapshot())
    assert submitted(total) == 3 and processes == 2

    clock.offset = RETIRE_AFTER_S + 1
    total, processes = web.total(web_metrics.tally.snapshot())
    assert submitted(total) == 3 and processes == 1  # the counter did not fall
    assert not worker.own.exists()
    assert [path.name for path in web.dir.glob("*.json")] == [RETIRED]


def test_a_stalled_process_whose_file_was_retired_counts_nothing_twice(tmp_path):
    clock = Later()
    web, web_metrics = a_process(tmp_path, clock)
    worker, worker_metrics = a_process(tmp_path)
    worker_metrics.task_submitted()
    worker.publish(worker_metrics.tally.snapshot())
    clock.offset = RETIRE_AFTER_S + 1
    web.total({})  # retires the worker's file: it looks dead
    clock.offset = 0

    worker_metrics.task_submitted()  # it was only stalled
    worker.publish(worker_metrics.tally.snapshot())
    total, processes = web.total({})
    assert submitted(total) == 2 and processes == 2


def test_a_clean_stop_hands_the_counts_to_the_retired_totals(tmp_path):
    web, _ = a_process(tmp_path)
    worker, worker_metrics = a_process(tmp_path)
    publisher = MetricsPublisher(worker_metrics.tally, worker, interval_s=3600)
    publisher.start()
    worker_metrics.task_submitted()
    publisher.stop()

    assert not worker.own.exists()
    total, processes = web.total({})
    assert submitted(total) == 1 and processes == 1


def test_a_publisher_writes_when_something_changed_and_only_then(tmp_path):
    folder, metrics = a_process(tmp_path)
    publisher = MetricsPublisher(metrics.tally, folder, interval_s=3600)
    publisher.publish_if_changed()
    assert not folder.own.exists()  # nothing counted yet: no file

    metrics.task_submitted()
    publisher.publish_if_changed()
    os.utime(folder.own, (1, 1))  # marks this version of the file
    publisher.publish_if_changed()
    assert folder.own.stat().st_mtime == 1

    metrics.task_submitted()
    publisher.publish_if_changed()
    assert folder.own.stat().st_mtime > 1
    reader, _ = a_process(tmp_path)
    assert submitted(reader.total({})[0]) == 2


def test_files_of_another_shape_are_left_out_of_the_sum(tmp_path):
    web, web_metrics = a_process(tmp_path)
    web_metrics.task_submitted()
    web.dir.mkdir(exist_ok=True)
    (web.dir / "torn.json").write_text('{"format": 1, "coun')
    (web.dir / "future.json").write_text(json.dumps({"format": 99, "counts": {}}))
    (web.dir / "odd.json").write_text(json.dumps({"format": 1, "counts": {
        TASKS_SUBMITTED.name: [[[], [5]], [["extra label"], [7]], "junk"], "aipy_no_such_metric": [[[], [1]]]}}))
    total, _ = web.total(web_metrics.tally.snapshot())
    assert submitted(total) == 6  # its own 1, and the one valid entry of odd.json
