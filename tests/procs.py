"""Finding the processes a test's code blocks started, from the host.

Blocks may run in a pid namespace, so the pids they print mean nothing out
here; a test gives each process it wants to find a unique marker as its
argv[0] (`exec -a MARKER ...`, or `sys.argv`) and looks for that instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .polling import wait_until


def new_marker(name: str = "aipy-test") -> str:
    return f"{name}-{os.getpid()}-{time.monotonic_ns()}"


def running(marker: str) -> bool:
    """A live (not zombie) process whose command line starts with `marker`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if cmdline.startswith(marker.encode()) and state != "Z":
            return True
    return False


def processes_of(uid: int) -> list[str]:
    """The state letter of each live process whose real uid is `uid`."""
    states = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["Uid"].split()[0]) == uid and fields["State"].split()[0] not in ("Z", "X"):
            states.append(fields["State"].split()[0])
    return states


def gone_within(marker: str, seconds: float) -> bool:
    """True once no process carries `marker`, False if one still does after
    `seconds` (the time a kill may take to land, not a pause for order)."""
    try:
        wait_until(lambda: not running(marker), timeout=seconds, what=f"no process marked {marker}")
    except AssertionError:
        return False
    return True


def kill_marked(marker: str) -> None:
    """SIGKILL, by pid, each process that carries `marker`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(marker.encode()):
                os.kill(int(pid), 9)
        except OSError:
            continue
