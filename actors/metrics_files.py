"""The tallies of a deployment's processes, shared through the data folder,
so that one scrape of any web process shows the whole pipeline.

Why files: in Redis mode the web, worker and clock processes already share
one data folder (the task store needs it), so each process can leave its
counts there and a scrape can add them up, with no endpoint per worker to
find and scrape, and no Redis traffic. The layout, `<data_dir>/.metrics/`
(mode 0700: task code never sees it)::

    <host>-<pid>-<token>.json  one live process's counts, replaced atomically
    retired.json               the summed counts of processes that are gone
    .lock                      flock: held to fold a file into retired.json,
                               to sum the files, and to write one

Publishing: each process's `MetricsPublisher` writes its file when something
changed, at most every `metrics_publish_interval_s` (5 s), and touches it
when nothing did, so that its mtime says that the process is alive. At a
clean stop the process folds its counts into retired.json and removes its
file: the totals do not fall when a worker stops or restarts.

Dead processes: one killed without a stop leaves its file behind. Its counts
stay in every sum until the file has not been refreshed for
`metrics_retire_after_s` (300 s); then the next scrape folds them into
retired.json and removes the file. So files do not pile up, and the counters
never fall: all that is lost is what the dead process counted since its last
publish (one interval at most). A process that was only stalled that long
finds its file gone at its next publish and from then on publishes only what
it counted since (its `baseline`), so nothing is counted twice. Liveness is
read from mtimes, not pids: the processes may be in containers with pid
namespaces of their own, sharing one volume. The counts therefore last as
long as the data folder; removing `.metrics/` starts them from zero (which
Prometheus reads as a counter reset).

Why not prometheus-client's own multiprocess mode: it takes its folder from
the process-wide PROMETHEUS_MULTIPROC_DIR, read as metrics are created, and
keeps process-global caches of its files, so several task systems in one
process (the tests build many, each on its own data folder) cannot each have
their own; its files (one per process and metric type) pile up with every
restart unless the folder is wiped at start, which a worker cannot do while
others run; and it is built for one machine's forked servers, where pids
say who is alive.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from storage.errors import storage_error
from storage.files import atomic_write, dumps
from storage.journallock import JournalLock

from .metrics import BY_NAME, Snapshot, Tally, add_into, difference

log = logging.getLogger("aipy.metrics")

FOLDER = ".metrics"
RETIRED = "retired.json"
#: Bumped when a file's shape changes: files of another format are ignored.
FORMAT = 1


def process_file_name() -> str:
    """``<host>-<pid>-<token>``: the host and pid say whose file it is; the
    random token keeps two task systems of one process (tests) apart, and a
    container's pid 1 from its predecessor's."""
    host = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class MetricsFolder:
    """`<data_dir>/.metrics/` as seen by one process. `retire_after_s`
    (default 300): a file not refreshed for that long is a dead process's.
    `clock` (default time.time) is compared with the files' mtimes."""

    def __init__(self, data_dir: Path | str, *, retire_after_s: float = 300.0,
                 clock: Callable[[], float] = time.time):
        self.dir = Path(data_dir) / FOLDER
        self.own = self.dir / f"{process_file_name()}.json"
        self.retired = self.dir / RETIRED
        self.retire_after_s = retire_after_s
        self._clock = clock
        self._lock = JournalLock(self.dir / ".lock")
        #: What this process counted that other files hold already (folded
        #: into retired.json): its file and its share of a sum leave it out.
        self.baseline: Snapshot = {}
        #: The counts behind this process's file, while the file exists.
        self._published: Snapshot | None = None

    @contextmanager
    def _held(self, action: str) -> Iterator[None]:
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
            with self._lock.held():
                yield
        except OSError as exc:
            raise storage_error(action, exc, self.dir) from exc

    def publish(self, counts: Snapshot) -> None:
        """Write this process's file: `counts` (its whole tally) less the baseline."""
        with self._held("publish the metrics"):
            self._notice_retired()
            atomic_write(self.own, dumps(_encode(difference(counts, self.baseline))))
            self._published = counts

    def refresh(self) -> None:
        """Touch this process's file, if it has one: it is still alive."""
        with self._held("publish the metrics"):
            if self._published is not None and self.own.exists():
                os.utime(self.own)

    def total(self, counts: Snapshot) -> tuple[Snapshot, int]:
        """The deployment's counts: this process's `counts` (less the
        baseline), every other process's file and retired.json, after
        folding the files of dead processes into the latter; and how many
        processes' counts are in the sum, this one included."""
        with self._held("read the metrics"):
            self._notice_retired()
            self._retire_stale()
            total = difference(counts, self.baseline)
            add_into(total, _read(self.retired))
            others = [path for path in self._process_files() if path != self.own]
            for path in others:
                add_into(total, _read(path))
            return total, 1 + len(others)

    def retire_own(self, counts: Snapshot) -> None:
        """At a clean stop: fold this process's counts into retired.json and
        remove its file, in one step under the lock."""
        with self._held("retire the metrics"):
            self._notice_retired()
            retired = _read(self.retired)
            add_into(retired, difference(counts, self.baseline))
            atomic_write(self.retired, dumps(_encode(retired)))
            self.own.unlink(missing_ok=True)
            self.baseline, self._published = counts, None

    def _notice_retired(self) -> None:
        """If another process folded our file (we looked dead: stalled past
        retire_after_s), what it held is in retired.json now: raise the
        baseline by it."""
        if self._published is not None and not self.own.exists():
            log.warning("Metrics: this process's file was retired while it lived (stalled over %g s)",
                        self.retire_after_s)
            self.baseline, self._published = self._published, None

    def _process_files(self) -> list[Path]:
        return [path for path in self.dir.glob("*.json") if path.name != RETIRED]

    def _retire_stale(self) -> None:
        """Fold the files not refreshed for retire_after_s into retired.json,
        and remove them with any temporary file a dead writer left."""
        cutoff = self._clock() - self.retire_after_s
        stale = [path for path in self._process_files() if path != self.own and _mtime(path) < cutoff]
        if stale:
            retired = _read(self.retired)
            for path in stale:
                add_into(retired, _read(path))
            atomic_write(self.retired, dumps(_encode(retired)))
            for path in stale:
                path.unlink(missing_ok=True)
            log.info("Metrics: counts of %d stopped process(es) folded into %s", len(stale), RETIRED)
        for leftover in self.dir.glob(".*.tmp"):
            if _mtime(leftover) < cutoff:
                leftover.unlink(missing_ok=True)


class MetricsPublisher:
    """Keeps this process's file in `folder` up to date with `tally`: a
    thread that looks every `interval_s` (default 5) and writes when the
    tally changed, else touches the file every `heartbeat_s` (default 100:
    keep it well under the folder's retire_after_s)."""

    def __init__(self, tally: Tally, folder: MetricsFolder, *, interval_s: float = 5.0, heartbeat_s: float = 100.0):
        self.tally = tally
        self.folder = folder
        self.interval_s = min(interval_s, heartbeat_s)
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._published_version = 0
        self._written_at = 0.0
        self._failed = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="metrics-publisher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.publish_if_changed()

    def publish_if_changed(self) -> None:
        """Write the file when the tally changed, else keep it fresh; an
        error is logged once (the next look tries again)."""
        version = self.tally.version  # read first: the snapshot then has at least this
        try:
            if version != self._published_version:
                self.folder.publish(self.tally.snapshot())
                self._published_version, self._written_at = version, time.monotonic()
            elif version and time.monotonic() - self._written_at >= self.heartbeat_s:
                self.folder.refresh()
                self._written_at = time.monotonic()
        except Exception as exc:
            self._log_once(exc)

    def stop(self) -> None:
        """Stop publishing and hand this process's counts to retired.json."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(5)
        self._thread = None
        if self.tally.version:
            try:
                self.folder.retire_own(self.tally.snapshot())
            except Exception as exc:
                self._log_once(exc)

    def _log_once(self, exc: Exception) -> None:
        if not self._failed:
            self._failed = True
            log.error("Metrics: could not publish this process's counts: %s (logged once)", exc)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed meanwhile: nothing to retire
        return float("inf")


def _encode(counts: Snapshot) -> dict:
    return {"format": FORMAT, "counts": {name: [[list(labels), numbers] for labels, numbers in by_labels.items()]
                                         for name, by_labels in counts.items()}}


def _read(path: Path) -> Snapshot:
    """The counts in `path`; none when it is missing. Entries of an unknown
    family or shape (another version's file, a hand edit) are skipped, so
    one odd file cannot break a scrape."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        log.warning("Metrics: %s is not valid JSON; its counts are left out", path)
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("counts"), dict):
        return {}
    counts: Snapshot = {}
    for name, entries in data["counts"].items():
        family = BY_NAME.get(name)
        if family is None or not isinstance(entries, list):
            continue
        for entry in entries:
            if _valid_entry(entry, len(family.labels), family.width):
                labels, numbers = entry
                add_into(counts, {name: {tuple(labels): [float(number) for number in numbers]}})
    return counts


def _valid_entry(entry: object, label_count: int, width: int) -> bool:
    if not (isinstance(entry, list) and len(entry) == 2):
        return False
    labels, numbers = entry
    return (isinstance(labels, list) and len(labels) == label_count and all(isinstance(v, str) for v in labels)
            and isinstance(numbers, list) and len(numbers) == width
            and all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers))
