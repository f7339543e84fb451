"""How much disk a task's folders take, measured while its code runs.

No filesystem quota is assumed (none exists on most hosts, and none can be
set per folder without one), so the executor measures the workspace every
second and stops the block once it is over its limit. A block can overshoot
by what it writes in that second, and each file is capped by RLIMIT_FSIZE.
"""

from __future__ import annotations

import os
from pathlib import Path


def tree_bytes(root: Path, stop_at: int) -> int:
    """Bytes allocated under `root` (links not followed), counted until it
    passes `stop_at`: past the limit the exact figure does not matter."""
    total = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    if total > stop_at:
                        return total
        except OSError:  # a folder removed or made unreadable meanwhile
            continue
    return total


class DiskUsage:
    """Are `roots` together over `limit_bytes`?"""

    def __init__(self, roots: tuple[Path, ...], limit_bytes: int):
        self.roots = roots
        self.limit = limit_bytes

    def over(self) -> bool:
        used = 0
        for root in self.roots:
            used += tree_bytes(root, self.limit - used)
            if used > self.limit:
                return True
        return False
