"""The conversation a follow-up task (`previous_task_id`) starts with, read
from the logs of the tasks it continues, newest back to oldest.

The chain is followed through each task's own `previous_task_id` until the
budget (`followup_context_chars`) is well covered, or a task is gone: a
cleaned-up earlier task only shortens the context of the later ones, it never
stops them from running.
"""

from __future__ import annotations

import logging

from agent import History, fit, task_turns
from storage import StorageError, TaskNotFound, TaskStore

log = logging.getLogger("aipy.runner")

#: Earlier tasks are read until their text is this many times the budget:
#: enough for `fit` to cut the oldest, without reading a very long chain whole.
READ_AHEAD = 2


def history_for(store: TaskStore, state: dict, budget_chars: int, lang: str = "en") -> History | None:
    """The history of the task whose state is `state`; None for a task that
    continues no other."""
    previous = state.get("previous_task_id")
    if not previous:
        return None
    chain = []  # newest first
    seen = {state["task_id"]}
    size = 0
    while previous and previous not in seen and size <= budget_chars * READ_AHEAD:
        seen.add(previous)
        try:
            earlier = store.get(previous)
            events = store.read_events(previous)
        except TaskNotFound:
            log.info("Task %s: earlier task %s is gone; its context ends there", state["task_id"], previous)
            break
        except StorageError as exc:
            log.warning("Task %s: earlier task %s cannot be read (%s); its context ends there",
                        state["task_id"], previous, exc)
            break
        turns = task_turns(earlier["instruction"], events, lang)
        chain.append(turns)
        size += sum(len(turn.text) for turn in turns)
        previous = earlier.get("previous_task_id")
    return fit(list(reversed(chain)), budget_chars, lang)
