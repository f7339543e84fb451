"""What a benchmarked process costs, read from /proc, and one wrk run."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """The CPU time `pid` has used so far, all its threads (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    """How many threads `pid` runs now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class WrkRun:
    rps: float    # requests per second
    made: int     # requests made
    errors: int   # answers that were not 2xx or 3xx


def wrk(url: str, seconds: float, connections: int, script: str | Path | None = None) -> WrkRun:
    """One wrk run on `url`: 2 threads, `connections` keep-alive connections,
    `script` (a Lua file) to shape the requests."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", *(["-s", str(script)] if script else []), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkRun(float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
                  int(re.search(r"(\d+) requests in", output).group(1)), int(errors.group(1)) if errors else 0)
