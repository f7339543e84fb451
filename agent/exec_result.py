"""What one code block did, as the `exec_result` event reports it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from .limits import ExecLimits

RESULT_STATUSES = ("success", "error", "timeout", "cancelled")


@dataclass
class ExecResult:
    """What one block did; `output` is the text shown back to the model.
    `not_started` (not part of the event) says why the sandbox could not
    start the block at all: the engine then fails the task. `value` and
    `notice` are in the event only when set."""

    status: str             # success | error | timeout | cancelled
    output: str             # the notice, stdout, stderr, then the value: each if any
    stdout: str
    stderr: str
    returncode: int | None  # None when the block never ran
    duration_ms: int
    not_started: str | None = None
    value: str | None = None    # repr of a final bare expression (kernel mode), capped like stdout
    notice: str | None = None   # what the runtime tells the model, e.g. that the Python state was lost

    @classmethod
    def from_dict(cls, data: dict) -> "ExecResult":
        """A result as an `exec_result` event recorded it (`to_dict`); a
        field missing or of the wrong type, in a log written by something
        else, reads as empty."""
        def text(name: str) -> str:
            value = data.get(name)
            return value if isinstance(value, str) else ""

        def number(name: str) -> int | None:
            value = data.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(text("status"), text("output"), text("stdout"), text("stderr"), number("returncode"),
                   number("duration_ms") or 0, value=text("value") or None, notice=text("notice") or None)

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["not_started"]
        for optional in ("value", "notice"):
            if data[optional] is None:
                del data[optional]
        return data


def error_result(message: str, started: float, *, not_started: str | None = None) -> ExecResult:
    """A block that did not run: `message` is all its output; `started` is
    when the attempt began (time.monotonic)."""
    return ExecResult("error", message, "", "", None, elapsed_ms(started), not_started)


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def finished(status: str | None, returncode: int | None, stdout: str, stderr: str, started: float,
             limits: ExecLimits, *, value: str | None = None, notice: str | None = None) -> ExecResult:
    """The result of a block that ran: `status` is how its watch ended
    (None: by itself; "timeout", "cancelled" or "over_disk"), `started` when
    the attempt began (time.monotonic)."""
    final, note = _ending(status, returncode, limits)
    output = _joined(notice, stdout, stderr, value) + note
    return ExecResult(final, output, stdout, stderr, returncode, elapsed_ms(started), value=value, notice=notice)


def _ending(status: str | None, returncode: int | None, limits: ExecLimits) -> tuple[str, str]:
    """The result's status, and the note added to its output, for how the
    watch ended."""
    if status == "timeout":
        return status, f"\n[timed out after {limits.timeout_s:g} s limit; all its processes killed]"
    if status == "cancelled":
        return status, "\n[cancelled; all its processes killed]"
    if status == "over_disk":
        return "error", (f"\n[stopped: the workspace grew past its {limits.max_workspace_mb} MB limit; "
                         "all its processes killed]")
    return ("success" if returncode == 0 else "error"), ""


def _joined(*parts: str | None) -> str:
    """The parts that are there, each starting on a line of its own."""
    output = ""
    for part in parts:
        if part:
            output += ("\n" if output and not output.endswith("\n") else "") + part
    return output
