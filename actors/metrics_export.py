"""The text of `GET /metrics`: the deployment's counts (this process's
tally plus the other processes' files, see metrics_files.py) and the tasks
pending and running now, in the Prometheus exposition format.

`MetricsExport` is a prometheus-client collector in a registry of its own:
the process-wide default REGISTRY would mix the task systems that tests
build side by side in one process, and would add the client's process and
GC metrics of whichever process happens to be scraped. The exposition itself
is prometheus-client's: `choose_encoder` answers the text format, or
OpenMetrics to a scraper that asks for it in its Accept header.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from .metrics import FAMILIES, Family, Tally
from .metrics_files import MetricsFolder

#: The statuses whose tasks are counted at scrape time, from the store.
CURRENT = ("pending", "running")


class StatusCounts(Protocol):
    def status_counts(self, *statuses: str) -> dict[str, int]:
        """How many tasks are in each status now (TaskStore)."""


class MetricsExport:
    """Renders `tally` (this process's counts), `folder` (the others') and
    the task counts `store` gives."""

    def __init__(self, tally: Tally, folder: MetricsFolder, store: StatusCounts):
        self.tally = tally
        self.folder = folder
        self.store = store
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition for a scraper sending `accept`, and its content type.
        Raises StorageError when the data folder cannot be read."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def describe(self) -> Iterable[Metric]:
        """The families without values (the registry checks names with it
        instead of collecting, which would read the data folder)."""
        return [_family(family, {}) for family in FAMILIES] + _gauges({status: 0 for status in CURRENT}, 0)

    def collect(self) -> Iterable[Metric]:
        # Everything is read before the first family is returned, so a
        # failure fails the scrape instead of cutting its text short.
        current = self.store.status_counts(*CURRENT)
        total, processes = self.folder.total(self.tally.snapshot())
        return [_family(family, total.get(family.name, {})) for family in FAMILIES] + _gauges(current, processes)


def _family(family: Family, counts: dict[tuple[str, ...], list[float]]) -> Metric:
    samples = {labels: [0.0] * family.width for labels in family.initial}
    samples.update(counts)
    if not family.buckets:
        metric = CounterMetricFamily(family.name, family.help, labels=family.labels)
        for labels, numbers in sorted(samples.items()):
            metric.add_metric(labels, numbers[0])
        return metric
    metric = HistogramMetricFamily(family.name, family.help, labels=family.labels)
    bounds = [floatToGoString(bound) for bound in family.buckets] + ["+Inf"]
    for labels, numbers in sorted(samples.items()):
        cumulative, running = [], 0.0
        for bound, count in zip(bounds, numbers[:-1]):
            running += count
            cumulative.append((bound, running))
        metric.add_metric(labels, cumulative, sum_value=numbers[-1])
    return metric


def _gauges(current: dict[str, int], processes: int) -> list[Metric]:
    return [
        GaugeMetricFamily("aipy_tasks_pending", "Tasks waiting for a worker now (read from the task store)",
                          value=current["pending"]),
        GaugeMetricFamily("aipy_tasks_running", "Tasks running now (read from the task store)",
                          value=current["running"]),
        GaugeMetricFamily("aipy_metrics_processes",
                          "Processes whose counts this scrape adds up: this one and every other that published "
                          "within metrics_retire_after_s", value=processes),
    ]

