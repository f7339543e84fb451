"""What one process counts for `GET /metrics`: the metric families, a
thread-safe `Tally` of their values, and `TaskMetrics`, the verbs the
pipeline records with (a task submitted, started, ended; an engine event; a
callback attempt; an HTTP request).

Each process records into a tally of its own, in memory; metrics_files.py
shares the tallies of a deployment's processes through the data folder, and
metrics_export.py renders their sum with prometheus-client. A tally holds
plain numbers keyed by label values (a counter: its value; a histogram: its
count per bucket, then the +Inf bucket, then the sum), so the same shape is
what a process publishes and what a scrape adds up or subtracts.

Recording never fails or slows a task: it is a few dict updates under one
lock, and an error in it (a bug, an event of an odd shape) is logged once
per `TaskMetrics` and otherwise ignored.

Label values stay few, so a long-running service keeps a bounded number of
series: statuses and outcomes come from fixed lists (anything else counts as
"other"), providers are the names in llm.json, and HTTP routes are route
templates, never raw paths (see app/http_metrics.py).
"""

from __future__ import annotations

import functools
import logging
import threading
from bisect import bisect_left
from dataclasses import dataclass

from agent.exec_result import RESULT_STATUSES
from storage import FINISHED, parse_ts

log = logging.getLogger("aipy.metrics")

#: Counts keyed by family name, then by label values: see the module docstring.
Snapshot = dict[str, dict[tuple[str, ...], list[float]]]

#: Seconds from a task's start to its end: quick answers to an hour's work.
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
#: Seconds from a submit to the task's start: the target is 10 ms (embedded)
#: and 25 ms (Redis); a busy service queues tasks for minutes.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

CALLBACK_ENDS = ("delivered", "failed", "refused")
OTHER = "other"


@dataclass(frozen=True)
class Family:
    """One metric family: `buckets` (upper bounds) make it a histogram,
    else it is a counter. `initial`: label values shown as 0 before anything
    was counted, so dashboards and alerts see every series from the start."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    initial: tuple[tuple[str, ...], ...] = ((),)

    @property
    def width(self) -> int:
        """Numbers kept per label set: a counter's value, or a histogram's
        count per bucket, its +Inf bucket and its sum."""
        return len(self.buckets) + 2 if self.buckets else 1


def _each(values) -> tuple[tuple[str, ...], ...]:
    return tuple((value,) for value in values)


TASKS_SUBMITTED = Family("aipy_tasks_submitted", "Tasks submitted: new tasks stored and queued by POST /tasks")
TASKS_FINISHED = Family("aipy_tasks_finished", "Tasks that reached a final status, by that status",
                        ("status",), initial=_each(sorted(FINISHED)))
TASK_DURATION = Family("aipy_task_duration_seconds",
                       "Seconds from a task's start to its end, by final status (tasks that never started are "
                       "not observed)", ("status",), DURATION_BUCKETS, initial=_each(sorted(FINISHED)))
TASK_QUEUE_WAIT = Family("aipy_task_queue_wait_seconds", "Seconds from a task's submit to its start on a worker",
                         buckets=WAIT_BUCKETS)
LLM_CALLS = Family("aipy_llm_calls", "LLM replies received, by provider (its name in llm.json)", ("provider",),
                   initial=())
LLM_TOKENS = Family("aipy_llm_tokens", "Tokens the LLM reported, by provider and kind (input, output)",
                    ("provider", "kind"), initial=())
CODE_BLOCKS = Family("aipy_code_blocks", "Code blocks run, by outcome (success, error, timeout, cancelled)",
                     ("outcome",), initial=_each(RESULT_STATUSES))
CALLBACK_ATTEMPTS = Family("aipy_callback_attempts", "Callback POSTs made, by outcome (delivered, failed)",
                           ("outcome",), initial=_each(("delivered", "failed")))
CALLBACK_DELIVERIES = Family("aipy_callback_deliveries",
                             "Callback deliveries that ended, by outcome: delivered, failed (no retry left) or "
                             "refused (the target is not allowed: callback_allowed_hosts)",
                             ("outcome",), initial=_each(CALLBACK_ENDS))
HTTP_REQUESTS = Family("aipy_http_requests", "HTTP requests answered, by method, route template and status",
                       ("method", "route", "status"), initial=())

FAMILIES = (TASKS_SUBMITTED, TASKS_FINISHED, TASK_DURATION, TASK_QUEUE_WAIT, LLM_CALLS, LLM_TOKENS, CODE_BLOCKS,
            CALLBACK_ATTEMPTS, CALLBACK_DELIVERIES, HTTP_REQUESTS)
BY_NAME = {family.name: family for family in FAMILIES}


class Tally:
    """The counts of one process. `version` grows with every change, so a
    publisher can tell cheaply whether there is anything new."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Snapshot = {}
        self.version = 0

    def _numbers(self, family: Family, labels: tuple[str, ...]) -> list[float]:
        by_labels = self._counts.setdefault(family.name, {})
        numbers = by_labels.get(labels)
        if numbers is None:
            numbers = by_labels[labels] = [0.0] * family.width
        return numbers

    def count(self, family: Family, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        with self._lock:
            self._numbers(family, labels)[0] += amount
            self.version += 1

    def observe(self, family: Family, labels: tuple[str, ...], value: float) -> None:
        """One histogram observation: the bucket is the first bound >= value."""
        with self._lock:
            numbers = self._numbers(family, labels)
            numbers[bisect_left(family.buckets, value)] += 1
            numbers[-1] += value
            self.version += 1

    def snapshot(self) -> Snapshot:
        """A copy of the counts, for publishing or rendering."""
        with self._lock:
            return {name: {labels: list(numbers) for labels, numbers in by_labels.items()}
                    for name, by_labels in self._counts.items()}


def add_into(total: Snapshot, more: Snapshot, sign: int = 1) -> None:
    """Add `more` (times `sign`) into `total`, label set by label set."""
    for name, by_labels in more.items():
        into = total.setdefault(name, {})
        for labels, numbers in by_labels.items():
            current = into.setdefault(labels, [0.0] * len(numbers))
            for at, number in enumerate(numbers):
                current[at] += sign * number


def difference(counts: Snapshot, minus: Snapshot) -> Snapshot:
    """`counts - minus`, keeping only the label sets that still count something."""
    result = {name: {labels: list(numbers) for labels, numbers in by_labels.items()}
              for name, by_labels in counts.items()}
    add_into(result, minus, sign=-1)
    return {name: kept for name, by_labels in result.items()
            if (kept := {labels: numbers for labels, numbers in by_labels.items() if any(numbers)})}


def _quietly(record):
    """Run a recording method; log its first failure and swallow every one,
    since counting must never fail the task, request or delivery it counts."""

    @functools.wraps(record)
    def guarded(self: TaskMetrics, *args, **kwargs) -> None:
        try:
            record(self, *args, **kwargs)
        except Exception:
            if not self.failed:
                self.failed = True
                log.exception("Metrics: %s failed; the metrics may miss some counts (logged once)", record.__name__)

    return guarded


class TaskMetrics:
    """The verbs the pipeline records with, into `tally` (a new one by default)."""

    def __init__(self, tally: Tally | None = None):
        self.tally = tally or Tally()
        #: Set at the first recording error (logged once).
        self.failed = False

    @_quietly
    def task_submitted(self) -> None:
        self.tally.count(TASKS_SUBMITTED)

    @_quietly
    def task_started(self, state: dict) -> None:
        """A task just moved to running (`state`: its task.json): its queue wait."""
        self.tally.observe(TASK_QUEUE_WAIT, (), _seconds_between(state["created_at"], state["started_at"]))

    @_quietly
    def task_ended(self, state: dict) -> None:
        """A task just reached its final status (`state`: its task.json)."""
        status = _known(state["status"], FINISHED)
        self.tally.count(TASKS_FINISHED, (status,))
        if state.get("started_at") and state.get("completed_at"):
            self.tally.observe(TASK_DURATION, (status,), _seconds_between(state["started_at"], state["completed_at"]))

    @_quietly
    def engine_event(self, provider: str, kind: str, content: dict) -> None:
        """An event the engine emitted for a task that runs on `provider`."""
        if kind == "llm_response":
            self.tally.count(LLM_CALLS, (provider,))
            usage = content.get("usage") or {}
            for token_kind in ("input", "output"):
                self.tally.count(LLM_TOKENS, (provider, token_kind), float(usage.get(f"{token_kind}_tokens") or 0))
        elif kind == "exec_result":
            self.tally.count(CODE_BLOCKS, (_known((content.get("result") or {}).get("status"), RESULT_STATUSES),))

    @_quietly
    def callback_attempt(self, delivered: bool, *, ended: bool, refused: bool = False) -> None:
        """One callback attempt; `ended`: no further attempt follows;
        `refused`: the target was not allowed, so nothing was sent."""
        if not refused:
            self.tally.count(CALLBACK_ATTEMPTS, ("delivered" if delivered else "failed",))
        if delivered or ended:
            outcome = "delivered" if delivered else "refused" if refused else "failed"
            self.tally.count(CALLBACK_DELIVERIES, (outcome,))

    @_quietly
    def http_request(self, method: str, route: str, status: int) -> None:
        self.tally.count(HTTP_REQUESTS, (method, route, str(status)))


def _known(value: object, known) -> str:
    return value if isinstance(value, str) and value in known else OTHER


def _seconds_between(start: str, end: str) -> float:
    """Seconds between two stored timestamps (``...Z``), never negative:
    the web and worker hosts' clocks may differ a little."""
    return max((parse_ts(end) - parse_ts(start)).total_seconds(), 0.0)
