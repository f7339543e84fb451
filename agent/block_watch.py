"""Watching one running block until it ends, then leaving nothing of it.

The watch reacts to the block's exit, its time limit, a cancel and its disk
use without fixed sleeps: it waits on the block's pipes until the next thing
that is due. However a fresh block ends, its whole process group is killed
before the child is reaped, and the sandbox session kills whatever left the
group. A kernel's block (kernel.py) ends when the kernel says so (`done`),
and only what the block left around the kernel is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from .output import Pipes
from .sandbox.usage import DiskUsage

#: After the main child exits, how long a grandchild may keep our pipes open
#: before we stop waiting for EOF and kill the group.
EXIT_GRACE_S = 0.2

#: How often the workspace's size is measured while a block runs.
USAGE_CHECK_S = 1.0

#: After the kill, how long output written before it is still read.
DRAIN_S = 0.05


@dataclass
class BlockWatch:
    """What may stop a block early: its time limit (`timeout_s` from
    `started`, a time.monotonic), the cancel probe (polled every `poll_s`)
    and the disk its folders use."""

    started: float
    timeout_s: float
    poll_s: float
    cancelled: Callable[[], bool]
    usage: DiskUsage


def watch_block(proc: subprocess.Popen, pipes: Pipes, watch: BlockWatch, end_block: Callable[[], None]) -> str | None:
    """Read the block's pipes until EOF or until something stops it.
    Returns "timeout", "cancelled", "over_disk" or None (it ended by
    itself), and always leaves the group killed, `end_block` called (the
    session's sweep of the block's uid) and the child reaped."""
    try:
        status = until_stopped(proc, pipes, watch)
    finally:
        kill_and_reap(proc, pipes, end_block)
    if status is None and watch.usage.over():
        status = "over_disk"
    return status


def until_stopped(proc: subprocess.Popen, pipes: Pipes, watch: BlockWatch,
                  done: Callable[[], bool] = lambda: False) -> str | None:
    """Read the pipes until EOF, until `proc` has exited (and a grace
    passed), until `done()` (checked after each read: "done"), or until
    something stops it ("timeout", "cancelled", "over_disk"); kills nothing."""
    deadline = watch.started + watch.timeout_s
    next_probe = exited_at = 0.0
    next_usage = watch.started + USAGE_CHECK_S
    while pipes.open:
        if done():
            return "done"
        now = time.monotonic()
        if now >= next_probe:
            next_probe = now + watch.poll_s
            if watch.cancelled():
                return "cancelled"
        if now >= deadline:
            return "timeout"
        if now >= next_usage:
            next_usage = now + USAGE_CHECK_S
            if watch.usage.over():
                return "over_disk"
        if not exited_at and exited(proc):
            exited_at = now
        if exited_at and now - exited_at >= EXIT_GRACE_S:
            return None  # a grandchild holds the pipes; stop waiting for EOF
        wait = min(next_probe, deadline, next_usage) - now
        if exited_at:
            wait = min(wait, exited_at + EXIT_GRACE_S - now)
        pipes.read(wait)
    return "done" if done() else None


def kill_and_reap(proc: subprocess.Popen, pipes: Pipes, end_block: Callable[[], None]) -> None:
    """Kill `proc`'s process group, call `end_block`, keep what the pipes
    already hold, and reap `proc`."""
    # Kill before reaping: while the zombie leader holds the pid, the pgid
    # cannot be reused by an unrelated process. With a uid of its own, the
    # session then kills whatever left the group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    end_block()
    pipes.drain(DRAIN_S)  # keep what was written before the kill
    pipes.close()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    proc.wait()


def await_exit(proc: subprocess.Popen, within: float = EXIT_GRACE_S) -> None:
    """Give a process whose pipes have ended a moment to exit too, so that
    its exit status, not the kill's, is reported. Leaves it unreaped."""
    until = time.monotonic() + within
    while not exited(proc) and time.monotonic() < until:
        time.sleep(0.005)


def exited(proc: subprocess.Popen) -> bool:
    """Has the child exited? Uses WNOWAIT so the zombie keeps its pid (and
    thus the group id) reserved until after the final killpg."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True
