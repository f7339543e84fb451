"""The cleanup: finished tasks older than an age go, with their workspaces,
and so do the idempotency keys older than the tasks are kept."""

from __future__ import annotations

import logging

from storage import IdempotencyKeys, TaskStore

log = logging.getLogger("aipy.cleanup")


class Cleanup:
    """`cleanup(max_age_hours)` removes what is older; None means the
    configured age (`max_age_hours`, default 24)."""

    def __init__(self, store: TaskStore, keys: IdempotencyKeys, max_age_hours: float):
        self.store = store
        self.keys = keys
        self.max_age_hours = max_age_hours

    def __call__(self, max_age_hours: float | None = None) -> int:
        """How many tasks were removed."""
        age = self.max_age_hours if max_age_hours is None else max_age_hours
        removed = self.store.delete_finished_older_than(age)
        # Keys live as long as tasks are kept by the settings, whatever age
        # this one cleanup was asked for, so a retry cannot start a twin.
        self.keys.prune(self.max_age_hours)
        log.info("Cleanup removed %d finished task(s) older than %g h", removed, age)
        return removed
