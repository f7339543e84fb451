"""The listing index in memory: one small record per task, kept in the
order listings need, with no I/O (the file protocol is in `index.py`).

A web process holds this for every task on disk, so a record is packed into
one int — created time, completed time (17-digit `times.ts_key` values) and
a status code — keyed by the id string: under 200 bytes a task, about 18 MB
for 100,000 tasks. Instructions and everything else stay on disk; a page's
summaries are read from its task.json files.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from typing import Iterable, Iterator

from .files import canonical_id
from .times import key_to_ts, ts_key

#: Status codes in a packed record, and "deleted" for tombstone lines.
CODES = {"pending": 0, "running": 1, "completed": 2, "error": 3, "cancelled": 4}
NAMES = {code: name for name, code in CODES.items()}
DELETED = "deleted"
#: Statuses only move forward, so of two records for one task the higher rank
#: is the newer: records can be merged in any order (rebuilds, repairs).
RANK = {"pending": 0, "running": 1, "completed": 2, "error": 2, "cancelled": 2, DELETED: 3}
_RANK_OF_CODE = {code: RANK[name] for name, code in CODES.items()}
#: Applying more records than this at once re-sorts once instead of inserting each.
_BULK = 1000
_DONE_SHIFT, _CREATED_SHIFT, _DONE_MASK = 3, 64, (1 << 61) - 1


def _pack(created: int, completed: int | None, code: int) -> int:
    return created << _CREATED_SHIFT | (completed or 0) << _DONE_SHIFT | code


class IndexTable:
    """Packed records by id, plus the ids sorted by (created, id) ascending."""

    def __init__(self) -> None:
        self.records: dict[str, int] = {}
        self.counts: Counter[int] = Counter()
        self._order: list[str] = []
        self._ordered = True

    def __len__(self) -> int:
        return len(self.records)

    def _key(self, task_id: str) -> tuple[int, str]:
        return self.records[task_id] >> _CREATED_SHIFT, task_id

    def defer_order(self) -> None:
        """Stop keeping the order per record (a bulk load follows); it is
        sorted once, at the next query."""
        self._ordered = False

    def apply_many(self, records: Iterable[dict], *, bulk: bool = False) -> None:
        """Merge records. In bulk (or more than _BULK in a list) the order is
        sorted once, at the next query, rather than kept up per record."""
        if bulk or (isinstance(records, list) and len(records) > _BULK):
            self._ordered = False
        for record in records:
            self.apply(record)

    def apply(self, record: dict) -> None:
        """Merge one index line; ValueError if it is not a valid record."""
        try:
            task_id, status = record["id"], record["status"]
            old = self.records.get(task_id)
            if old is None and canonical_id(task_id) != task_id:
                raise ValueError(f"bad id {task_id!r}")
            if status == DELETED:
                self._remove(task_id)
                return
            code, created, completed = CODES[status], record["created_at"], record.get("completed_at")
            if not isinstance(created, str) or not (completed is None or isinstance(completed, str)):
                raise ValueError("bad timestamps")
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an index record: {record!r}") from exc
        if old is not None:
            if _RANK_OF_CODE[old & 7] > RANK[status]:
                return  # a stale record (e.g. a repair racing a transition)
            self.counts[old & 7] -= 1
            self.records[task_id] = _pack(old >> _CREATED_SHIFT, ts_key(completed), code)
            self.counts[code] += 1
            return
        self.records[task_id] = _pack(ts_key(created), ts_key(completed), code)
        self.counts[code] += 1
        if self._ordered:
            if not self._order or self._key(self._order[-1]) <= self._key(task_id):
                self._order.append(task_id)  # the usual case: the newest task
            else:
                insort(self._order, task_id, key=self._key)

    def _remove(self, task_id: str) -> None:
        old = self.records.get(task_id)
        if old is None:
            return
        if self._ordered:
            at = bisect_left(self._order, self._key(task_id), key=self._key)
            if at < len(self._order) and self._order[at] == task_id:
                del self._order[at]
            else:  # cannot happen while the order is consistent; recover anyway
                self._ordered = False
        del self.records[task_id]
        self.counts[old & 7] -= 1

    def _sorted(self) -> list[str]:
        if not self._ordered:
            records = self.records
            self._order = sorted(records)  # by id, then (stable) by created:
            self._order.sort(key=lambda task_id: records[task_id] >> _CREATED_SHIFT)
            self._ordered = True
        return self._order

    def status(self, task_id: str) -> str | None:
        packed = self.records.get(task_id)
        return None if packed is None else NAMES[packed & 7]

    def page(self, status: str | None, limit: int, offset: int) -> tuple[list[tuple[str, str]], int]:
        """(id, status) of one page, newest first, and the number of matching tasks."""
        order, records = self._sorted(), self.records
        if status is None:
            total = len(order)
            stop = max(total - offset, 0)
            chosen = reversed(order[max(stop - limit, 0):stop])
            return [(task_id, NAMES[records[task_id] & 7]) for task_id in chosen], total
        code = CODES[status]
        total = self.counts[code]
        wanted = min(offset + limit, total)
        found: list[tuple[str, str]] = []
        seen = 0
        if wanted > offset:
            for task_id in reversed(order):
                if records[task_id] & 7 == code:
                    seen += 1
                    if seen > offset:
                        found.append((task_id, status))
                        if seen >= wanted:
                            break
        return found, total

    def ids_with(self, statuses: Iterable[str]) -> list[tuple[str, str]]:
        """(id, status) of tasks recorded with one of `statuses`, oldest first."""
        codes, records = {CODES[status] for status in statuses}, self.records
        return [(task_id, NAMES[records[task_id] & 7]) for task_id in self._sorted() if records[task_id] & 7 in codes]

    def finished_before(self, cutoff: int, finished: Iterable[str]) -> list[str]:
        """Ids with a finished status and a completed key older than `cutoff`."""
        codes = {CODES[status] for status in finished}
        return [
            task_id for task_id, packed in self.records.items()
            if packed & 7 in codes and 0 < (packed >> _DONE_SHIFT) & _DONE_MASK < cutoff
        ]

    def lines(self) -> Iterator[bytes]:
        """The live records as index lines, oldest first (for rewriting the
        file). Built by hand: ids are validated UUIDs, times digits."""
        records = self.records
        for task_id in self._sorted():
            packed = records[task_id]
            done = (packed >> _DONE_SHIFT) & _DONE_MASK
            done_json = f'"{key_to_ts(done)}"' if done else "null"
            yield (f'{{"id":"{task_id}","status":"{NAMES[packed & 7]}",'
                   f'"created_at":"{key_to_ts(packed >> _CREATED_SHIFT)}","completed_at":{done_json}}}\n').encode()
