"""The processes around a task's Python kernel, seen from the host.

A kernel outlives its blocks (../kernel.py), so "kill everything the block
started" becomes "kill everything of the task except the kernel". What that
is depends on the tier, as the table in sandbox.py says:

- with a uid of its own (the service is root, either tier): every process of
  that uid (identity.kill_all_of with `spare`);
- bubblewrap in a user namespace: every process of the sandbox's pid
  namespace, which all descend from its init (orphans are re-parented to
  it, whatever setsid() or double forks they did);
- the process tier as a user (weak): the kernel's process group, as for a
  fresh block.

Zombies are skipped: they run nothing, and a frozen kernel reaps none.
"""

from __future__ import annotations

import os
import signal
from typing import Callable

from .identity import SWEEP_ROUNDS

#: pid -> (parent pid, process group) of every live process.
Table = dict[int, tuple[int, int]]


def processes() -> Table:
    """Every live (not zombie) process: its parent and process group."""
    table: Table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields and fields[0] not in (b"Z", b"X"):
            table[int(name)] = (int(fields[1]), int(fields[2]))
    return table


def descendants(table: Table, root: int) -> list[int]:
    """The pids below `root` in `table`, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), ()):
            found.append(child)
            queue.append(child)
    return found


def innermost_pid(pid: int) -> int | None:
    """The pid that process `pid` has in its own pid namespace."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def find_kernel(root: int, inner_pid: int) -> tuple[int, int] | None:
    """(pid, parent pid) here of the process in `root`'s tree (`root`
    included) whose own pid namespace calls it `inner_pid`; None if none.
    Asked before any of the model's code runs, so the tree holds only the
    sandbox's processes and the kernel."""
    table = processes()
    for pid in [root, *descendants(table, root)]:
        if pid in table and innermost_pid(pid) == inner_pid:
            return pid, table[pid][0]
    return None


def alone_in_namespace(kernel: int, inner: int) -> bool:
    """Does the pid namespace of process `kernel` (whose pid there is
    `inner`) hold nothing but it and the namespace's init? Read from the
    namespace's own /proc, which bubblewrap mounts and the code cannot
    unmount, through the kernel's root: a listing of a few entries, not a
    scan of the host. False when it cannot be told."""
    try:
        names = os.listdir(os.path.join("/proc", str(kernel), "root", "proc"))
    except OSError:
        return False
    pids = {name for name in names if name.isdigit()}
    return bool(pids) and pids <= {"1", str(inner)}


def kill_descendants(root: int, spare: int) -> int:
    """Kill every process below `root` except `spare`, until none is left."""
    return _kill_until_none(lambda table: [p for p in descendants(table, root) if p != spare])


def kill_group(pgid: int, spare: int) -> int:
    """Kill every process of group `pgid` except `spare`, until none is left."""
    return _kill_until_none(lambda table: [p for p, (_, g) in table.items() if g == pgid and p != spare])


def _kill_until_none(select: Callable[[Table], list[int]]) -> int:
    """Rounds of "find, kill" until a round finds nothing: a process may fork
    between the scan and its kill, and its child shows up in the next round."""
    killed = 0
    for _ in range(SWEEP_ROUNDS):
        found = select(processes())
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed
