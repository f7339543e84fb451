"""What one code block did, as the `exec_result` event reports it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

RESULT_STATUSES = ("success", "error", "timeout", "cancelled")


@dataclass
class ExecResult:
    """What one block did; `output` is the text shown back to the model.
    `not_started` (not part of the event) says why the sandbox could not
    start the block at all: the engine then fails the task."""

    status: str             # success | error | timeout | cancelled
    output: str             # stdout, then stderr (if any) after it
    stdout: str
    stderr: str
    returncode: int | None  # None when the block never ran
    duration_ms: int
    not_started: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["not_started"]
        return data


def error_result(message: str, started: float, *, not_started: str | None = None) -> ExecResult:
    """A block that did not run: `message` is all its output; `started` is
    when the attempt began (time.monotonic)."""
    return ExecResult("error", message, "", "", None, elapsed_ms(started), not_started)


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
