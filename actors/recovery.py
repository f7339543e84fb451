"""After an embedded server restarts: the tasks its previous life left.

A `running` task was running in the process that died, so it ends as an
error (its code was killed with the process, or by the sandbox's start-up
sweep); a `pending` task's message was in that process's memory, so it is
queued again.
"""

from __future__ import annotations

import logging

from storage import InvalidTransition, StorageError, TaskStore

from .pipeline import Pipeline
from .runner import INTERRUPTED_BY_SHUTDOWN

log = logging.getLogger("aipy.recovery")


def recover(store: TaskStore, pipeline: Pipeline) -> tuple[int, int]:
    """End the running tasks and queue the pending ones again; returns
    (queued again, ended)."""
    failed = requeued = 0
    for task_id in store.ids_with_status("running"):
        try:  # one damaged task must not keep the others, or the server, down
            store.end_task(task_id, "error", error=INTERRUPTED_BY_SHUTDOWN)
        except (StorageError, InvalidTransition) as exc:
            log.error("Task %s could not be recovered: %s", task_id, exc)
            continue
        pipeline.task_finished(task_id)
        failed += 1
    for task_id in store.ids_with_status("pending"):
        pipeline.submit(task_id)
        requeued += 1
    if failed or requeued:
        log.info("Recovered after restart: %d pending task(s) queued again, %d interrupted", requeued, failed)
    return requeued, failed
