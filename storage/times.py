"""Timestamps as the API spells them, and a cheap sortable key for them.

Every stored time is UTC ISO 8601 with milliseconds and ``Z``
(``2024-01-01T12:00:05.123Z``), as in the spec, so files are readable by
people and ``jq`` alike. The listing index only needs to *order* and
*compare* times, so it keeps them as 17-digit integers (``YYYYMMDDhhmmssmmm``)
that sort exactly like the strings but take less than half the memory.
"""

from __future__ import annotations

from datetime import datetime, timezone


def system_clock() -> datetime:
    """The default clock of a store: aware UTC now."""
    return datetime.now(timezone.utc)


def format_ts(moment: datetime) -> str:
    """`moment` as ``YYYY-MM-DDThh:mm:ss.mmmZ``; naive datetimes are taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_ts(value: str) -> datetime:
    """A stored timestamp as an aware UTC datetime; ValueError when it is not
    one. (Python 3.10's ``fromisoformat`` reads no ``Z``.)"""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def utc_now_iso() -> str:
    """Now, formatted like every timestamp the service stores and returns."""
    return format_ts(system_clock())


def ts_key(value: str | None) -> int | None:
    """A stored timestamp as an int that sorts like the timestamp itself.

    The canonical form is sliced, not parsed (it is on the hot path of loading
    the index); anything else is parsed by ``fromisoformat`` and re-formatted.
    An unreadable value sorts as the oldest possible time rather than failing.
    """
    if value is None:
        return None
    if len(value) == 24 and value[23] == "Z" and value[4] == "-" and value[10] == "T" and value[19] == ".":
        digits = value[0:4] + value[5:7] + value[8:10] + value[11:13] + value[14:16] + value[17:19] + value[20:23]
        if digits.isdigit():
            return int(digits)
    try:
        return ts_key(format_ts(parse_ts(value)))
    except (ValueError, TypeError, AttributeError):
        return 0


def key_to_ts(key: int) -> str:
    """The timestamp string back from a `ts_key` (for rewriting the index)."""
    d = f"{key:017d}"
    return f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}.{d[14:17]}Z"
