"""Warm kernels: Python kernels started, sandbox and all, before any task
asks for one, so that a task's first Python block does not wait for an
interpreter to start.

A warm kernel is a kernel like any task's (kernel.py), started by one
long-lived thread through the same `ExecSession` path, with the same limits,
under a uid leased for it alone, in a slot (sandbox/slots.py) that becomes
the workspace of the task that takes it. No code runs in it before a task
takes it: the kernel program waits for its first request. A task takes at
most one warm kernel, and a kernel serves one task only; a task whose
limits differ from the pool's (its own time limit), or that ran another
block first, starts its own kernel as before.

bubblewrap's --die-with-parent ties each kernel to the thread that started
it, so that thread lives until every kernel it started has ended, also
those taken by tasks: `close` stops filling the pool and ends the kernels
no task took; the thread then waits for the others.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .block_watch import BlockWatch, exited
from .kernel import Kernel, KernelNotStarted
from .sandbox import Session
from .sandbox import slots
from .sandbox.usage import DiskUsage

if TYPE_CHECKING:
    from .exec_session import ExecSession
    from .executor import Executor
    from .limits import ExecLimits

log = logging.getLogger("aipy.warm")

#: After a kernel failed to start, how long before the next try, doubling up
#: to the cap: a broken sandbox must not be retried in a tight loop.
RETRY_S, RETRY_CAP_S = 1.0, 60.0

#: The niceness a kernel starts at while no task has taken it, when the
#: service is root: starting ahead is worth doing only with CPU that tasks
#: do not need. Its task gives it the normal niceness back (kernel.renice).
WARM_NICENESS = 10


@dataclass
class WarmKernel:
    """A ready kernel, its session (lease, slot) and the lock on its slot."""

    blocks: ExecSession
    slot_lock: int

    @property
    def session(self) -> Session:
        return self.blocks.session

    def release(self) -> Kernel:
        """The kernel, for the task whose session adopted this one's."""
        os.close(self.slot_lock)
        kernel = self.blocks.kernel
        assert kernel is not None
        self.blocks.kernel = None
        kernel.renice(0)
        return kernel

    def end(self) -> None:
        """Stop the kernel and give back its uid and slot."""
        try:
            self.blocks.close()
            self.session.close()
        finally:
            shutil.rmtree(self.session.workspace, ignore_errors=True)
            os.close(self.slot_lock)


class WarmKernels:
    """Keeps `size` kernels ready for `executor`'s tasks, each started in a
    slot of `folder` (the folder of the task workspaces)."""

    def __init__(self, executor: Executor, folder: Path, size: int):
        self.executor = executor
        self.limits = executor.limits
        self.folder = Path(folder)
        self.size = size
        self._ready: list[WarmKernel] = []
        self._started: list[Kernel] = []  # every kernel the thread started and that may still run
        self._closed = False
        #: How many kernels tasks have taken so far.
        self.taken = 0
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._fill, name="warm-kernels", daemon=True)
        self._thread.start()

    def take(self, limits: ExecLimits) -> WarmKernel | None:
        """A ready kernel started with `limits`' start-up limits, or None
        (none ready, other limits, or closed). Never waits."""
        if limits.kernel_start_key() != self.limits.kernel_start_key():
            return None
        with self._wake:
            if not self._ready:
                return None
            warm = self._ready.pop()
            self.taken += 1
            self._wake.notify_all()
        if not warm.blocks.kernel or not warm.blocks.kernel.alive():  # died while it waited
            warm.end()
            return None
        return warm

    def ready(self) -> int:
        with self._wake:
            return len(self._ready)

    def close(self, timeout: float | None = None) -> None:
        """Stop filling, end the kernels no task took, and (with a `timeout`)
        wait that long for the thread, which outlives every kernel it started."""
        with self._wake:
            self._closed = True
            left, self._ready = self._ready, []
            self._wake.notify_all()
        for warm in left:
            warm.end()
        if timeout is not None:
            self._thread.join(timeout)

    def _fill(self) -> None:
        slots.sweep(self.folder)
        pause = RETRY_S
        while True:
            with self._wake:
                while not self._closed and len(self._ready) >= self.size:
                    self._wake.wait()
                if self._closed:
                    break
            warm = self._start_one()
            if warm is None:
                with self._wake:
                    self._wake.wait(pause)
                pause = min(pause * 2, RETRY_CAP_S)
                continue
            pause = RETRY_S
            with self._wake:
                if not self._closed:
                    self._ready.append(warm)
                    continue
            warm.end()
        # --die-with-parent: a kernel dies with this thread, so the thread
        # waits for the kernels tasks took (their tasks end them).
        while self._started:
            self._started = [k for k in self._started if not k.ended and not exited(k.proc)]
            time.sleep(0.05)

    def _start_one(self) -> WarmKernel | None:
        """Start one kernel in a new slot; None (logged) when it could not."""
        from .exec_session import ExecSession  # exec_session imports this module's users

        try:
            slot, lock = slots.make(self.folder)
        except OSError as exc:
            log.warning("could not make a slot for a warm kernel in %s: %s", self.folder, exc)
            return None
        session = Session(self.executor.sandbox, slot)
        warm = WarmKernel(ExecSession(self.executor, session), lock)
        # Only root may give the normal niceness back when a task takes it.
        warm.blocks.niceness = WARM_NICENESS if os.geteuid() == 0 else 0
        lim = self.limits
        try:
            session.open()
            scratch = warm.blocks.kernel_scratch()
            watch = BlockWatch(time.monotonic(), lim.timeout_s, lim.poll_interval_s, lambda: self._closed,
                               DiskUsage((slot, scratch), lim.workspace_bytes))
            kernel = warm.blocks.start_kernel(scratch, watch)
        except (OSError, RuntimeError, KernelNotStarted) as exc:
            log.warning("could not start a warm kernel: %s", exc)
            warm.end()
            return None
        kernel.freeze()  # nothing of it runs until its task's first block
        self._started = [k for k in self._started if not k.ended] + [kernel]
        return warm
