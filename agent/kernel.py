"""A task's Python kernel, seen from the server: one interpreter, started in
the task's sandbox by its first Python block, that runs all its Python
blocks (kernel_program.py is the other end; exec_session.py drives it).

How nothing a block starts outlives the block, while the kernel does:

- Each block gets new stdout and stderr pipes, handed to the kernel with
  the request (SCM_RIGHTS on its control socket). The block is over when
  the kernel reports so, not at end of file: the kernel first puts
  /dev/null back on its fds 1 and 2, so once the rest is killed the pipes
  end, and a process that escaped the kill writes into a pipe nobody reads
  any more. Nothing leaks into the next block's output.
- When a block is over the kernel is frozen (SIGSTOP), then everything else
  of the task is killed: the session's sweep sparing the kernel (by uid, by
  pid namespace or by process group, see sandbox/family.py). Frozen, nothing
  the model left inside it (a thread, a timer) runs or starts a process
  while no block runs; it is thawed (SIGCONT) for the next block.
- A timeout, a cancel, the disk limit or a broken protocol kills the kernel
  with everything else, as a fresh block is killed. A kernel that ends by
  itself (os._exit, a crash, exec of another program) ends its block as the
  process's exit ends a fresh one. Either way the next Python block starts
  a new kernel, and its result tells the model that the earlier state is
  gone.
- Leaving the session stops the kernel: asked to exit (open files are then
  flushed, as at the end of a script), killed after STOP_GRACE_S; the
  sandbox session then kills whatever its uid still runs.

bubblewrap's --die-with-parent ties the kernel to the thread that started
it: run a task's blocks on one thread, as the engine does.
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .block_watch import DRAIN_S, BlockWatch, await_exit, exited, kill_and_reap, until_stopped
from .output import OutputCapture, Pipes, capped_text
from .sandbox import Session
from .sandbox.family import find_kernel

#: The kernel program's source, written into each kernel's scratch folder:
#: the project's own folder may be masked inside the sandbox.
PROGRAM = (Path(__file__).parent / "kernel_program.py").read_text(encoding="utf-8")

#: At the end of its task, how long the kernel may take to exit (flushing
#: files, running atexit handlers) before it is killed.
STOP_GRACE_S = 1.0

#: Bytes of the sandbox's handshake and of a failed start's stderr kept.
_START_CAP = 4096

#: What the model is told in the first Python block after its kernel was lost.
LOST_NOTICE = {
    "en": "[a new Python interpreter: the previous one ended with an earlier block, so the variables, "
          "imports and open files of earlier blocks are gone; files in the workspace remain]",
    "zh": "[已启动新的 Python 解释器：之前的解释器已随先前的代码块结束，先前代码块中的变量、导入和打开的文件都已不存在；"
          "工作区中的文件仍然保留]",
}

#: `spawn(ready_fd, control_fd)`: starts the kernel through the sandbox tier.
Spawn = Callable[[int, int], subprocess.Popen]


class KernelNotStarted(Exception):
    """No kernel: `status` is "timeout", "cancelled" or "over_disk" when the
    first block's watch stopped the start, else None (the sandbox could not
    start it, for the reason given)."""

    def __init__(self, reason: str, status: str | None = None):
        super().__init__(reason)
        self.status = status


@dataclass
class BlockEnd:
    """How a block in the kernel ended: `status` is None when it ran to its
    end (or the kernel exited), else "timeout", "cancelled" or "over_disk"."""

    status: str | None
    returncode: int | None
    value: str | None = None
    kernel_lost: bool = False


class Kernel:
    """A running kernel (see the module's docstring); made by `start`."""

    def __init__(self, session: Session, scratch: Path, proc: subprocess.Popen, control: socket.socket,
                 pid: int, parent: int, inner: int | None = None):
        self.session = session
        self.scratch = scratch  # its TMPDIR, its program and the files of unnamed blocks
        self.proc = proc
        self.control = control
        self.pid = pid          # the kernel, as seen from here
        self.parent = parent    # the sandbox's init under bubblewrap
        self.inner = inner      # the kernel's pid in its own pid namespace
        self.blocks = 0
        self.ended = False
        # Signals go through a pidfd where the host has them: under
        # bubblewrap the kernel is not our child, and once it has died and
        # been reaped its pid could be another process's.
        self.pidfd = _pidfd(pid)
        # Under bubblewrap, the init of the sandbox's pid namespace: opened
        # now, while the kernel (its child) keeps it alive, so that the task's
        # end can tell when the namespace is empty (_sandbox_emptied).
        self.init_pidfd = _pidfd(parent) if session.sandbox.tier == "bubblewrap" else None

    @classmethod
    def start(cls, session: Session, spawn: Spawn, watch: BlockWatch, scratch: Path) -> Kernel:
        """Start a kernel in `scratch` and wait (under the first block's
        watch) until it is ready. Raises KernelNotStarted."""
        ready_r, ready_w = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = spawn(ready_w, theirs.fileno())
        except OSError as exc:
            os.close(ready_r)
            ours.close()
            raise KernelNotStarted(str(exc)) from None
        finally:
            os.close(ready_w)
            theirs.close()
        handshake, err, hello = OutputCapture(_START_CAP), OutputCapture(_START_CAP), Reports()
        pipes = Pipes()
        pipes.add(proc.stderr, err)  # type: ignore[arg-type]
        pipes.add(ours, hello)  # type: ignore[arg-type]
        with os.fdopen(ready_r, "rb", buffering=0) as ready:
            pipes.add(ready, handshake)
            status = until_stopped(proc, pipes, watch, done=lambda: bool(hello.messages) or hello.broken)
            found, inner = None, None
            if status == "done" and hello.messages and isinstance(hello.messages[0].get("pid"), int):
                inner = hello.messages[0]["pid"]
                found = find_kernel(proc.pid, inner)
            if found is None:
                kill_and_reap(proc, pipes, session.end_block)
                ours.close()
                raise KernelNotStarted(_why(handshake.data(), err.text(), proc.returncode),
                                       status if status in ("timeout", "cancelled", "over_disk") else None)
            pipes.close()
        return cls(session, scratch, proc, ours, *found, inner=inner)

    def alive(self) -> bool:
        """Is the kernel's process still running? (Not reaped here: see kill.)"""
        return not self.ended and not exited(self.proc)

    def run(self, request: dict, watch: BlockWatch, out: OutputCapture, err: OutputCapture,
            value_cap: int) -> BlockEnd:
        """Run one block: `request` names its file, path0 and cwd (see
        kernel_program.py); its output goes to `out` and `err`."""
        self.blocks += 1
        block = self.blocks
        line = json.dumps({**request, "block": block, "value_cap": value_cap}).encode() + b"\n"
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self._signal(signal.SIGCONT)
            self.control.sendmsg([line], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [out_w, err_w]))])
        except OSError:
            pass  # the kernel is gone: the watch finds it ended
        finally:
            os.close(out_w)
            os.close(err_w)
        reports = Reports(6 * value_cap + 4096)
        pipes = Pipes()
        with os.fdopen(out_r, "rb", buffering=0) as out_pipe, os.fdopen(err_r, "rb", buffering=0) as err_pipe:
            pipes.add(out_pipe, out)
            pipes.add(err_pipe, err)
            pipes.add(self.control, reports)  # type: ignore[arg-type]
            status = until_stopped(self.proc, pipes, watch, done=lambda: reports.for_block(block) is not None
                                   or reports.broken)
            report = reports.for_block(block) if status == "done" and not reports.broken else None
            if report is not None:
                self._settle(pipes)
                if not watch.usage.over():
                    return BlockEnd(None, report["exit"], _value(report, value_cap))
                status = "over_disk"
            elif status is None:  # the kernel ended by itself: report its own exit status
                await_exit(self.proc)
            self.kill(pipes)
        return BlockEnd(None if status == "done" else status, self.proc.returncode, kernel_lost=True)

    def stop(self) -> None:
        """Ask the kernel to exit as a script ends (atexit handlers run, open
        files are flushed), then kill it and whatever is left: at once when
        it has exited, after STOP_GRACE_S at the latest."""
        deadline = time.monotonic() + STOP_GRACE_S
        exited_itself = False
        try:
            self._signal(signal.SIGCONT)
            self.control.sendall(b'{"stop": true}\n')
            # Its end of the socket closes as it exits: a wait without the
            # coarse polling of Popen.wait(timeout).
            while deadline > time.monotonic():
                self.control.settimeout(deadline - time.monotonic())
                if not self.control.recv(4096):
                    exited_itself = True
                    break
        except OSError:  # gone already, or the grace is over
            pass
        self.kill(emptied=exited_itself and self._sandbox_emptied(deadline))

    def _sandbox_emptied(self, deadline: float) -> bool:
        """After the kernel exited by itself: empty its bubblewrap sandbox
        and say whether it is empty (by `deadline`); then nothing of the
        task is left. The sandbox's init outlives the kernel while anything
        the code started lives on (it waits for every orphan of the
        namespace), so it is killed here; as the init of a pid namespace
        dies, the host's kernel kills every other process of the namespace
        and waits until they are all gone, and only then reports the init's
        own exit, which is what its pidfd waits for. The task's uid runs
        nothing outside the namespace: each of its other blocks was swept as
        it ended. (bubblewrap's own process exits as soon as the kernel
        does, so its exit proves nothing.)"""
        if self.init_pidfd is None:
            return False
        try:
            signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
        except ProcessLookupError:  # gone already: its exit was reported, the namespace is empty
            pass
        except OSError:
            return False
        poller = select.poll()
        poller.register(self.init_pidfd, select.POLLIN)
        return bool(poller.poll(max(0.0, deadline - time.monotonic()) * 1000))

    def kill(self, pipes: Pipes | None = None, *, emptied: bool = False) -> None:
        """Kill the kernel and everything of its task (keeping what `pipes`
        already hold); reap it. Once only: after the reap its pid, and so
        its process group's id, may be another's. `emptied`: the sandbox
        ended by itself with nothing left in it (_sandbox_emptied), so the
        task's uid needs no sweep."""
        if self.ended:
            return
        self.ended = True
        kill_and_reap(self.proc, pipes or Pipes(), lambda: self.session.end_block(emptied=emptied))
        self.control.close()
        for fd in (self.pidfd, self.init_pidfd):
            if fd is not None:
                os.close(fd)
        self.pidfd = self.init_pidfd = None

    def renice(self, niceness: int) -> None:
        """Run the kernel and the sandbox around it at `niceness` (lowering
        it needs root: elsewhere they keep what they started with)."""
        for pid in (self.proc.pid, self.parent, self.pid):
            try:
                os.setpriority(os.PRIO_PROCESS, pid, niceness)
            except OSError:
                pass

    def freeze(self) -> None:
        """Stop the kernel from running until its next block."""
        self._signal(signal.SIGSTOP)

    def _settle(self, pipes: Pipes) -> None:
        """After a block: freeze the kernel, kill what the block left, keep
        what they wrote before."""
        self.freeze()
        self.session.end_kernel_block(self.pid, self.parent, self.inner)
        pipes.drain(DRAIN_S)
        pipes.close()

    def _signal(self, signum: int) -> None:
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signum)
            elif self.alive():
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass


class Reports:
    """The kernel's messages, one JSON object per line, read as they come
    (a capture for Pipes). The kernel runs the model's code, so nothing it
    says is trusted: a line past `limit` bytes, or one that is not a JSON
    object, marks the channel `broken`."""

    def __init__(self, limit: int = _START_CAP) -> None:
        self.limit = limit
        self.pending = b""
        self.messages: list[dict] = []
        self.broken = False

    def add(self, data: bytes) -> None:
        self.pending += data
        while b"\n" in self.pending:
            line, _, self.pending = self.pending.partition(b"\n")
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                self.broken = True
                return
            self.messages.append(message)
        if len(self.pending) > self.limit:
            self.broken = True
            self.pending = b""

    def for_block(self, block: int) -> dict | None:
        """The report of block number `block`, when it came and is well formed."""
        for message in self.messages:
            if message.get("block") == block and type(message.get("exit")) is int \
                    and isinstance(message.get("value"), (str, type(None))) \
                    and type(message.get("value_bytes", 0)) is int:
                return message
        return None


def _value(report: dict, cap: int) -> str | None:
    """The report's value, cut to `cap` characters as its stdout would be."""
    value = report.get("value")
    if value is None:
        return None
    return capped_text(value[:cap], max(report.get("value_bytes", 0), len(value)), cap)


def _why(handshake: bytes, stderr: str, returncode: int | None) -> str:
    """Why a kernel did not start, in the sandbox's or its own words."""
    return handshake.partition(b"!")[2].decode(errors="replace") or stderr.strip()[-500:] \
        or f"exit status {returncode}"


def _pidfd(pid: int) -> int | None:
    """A pidfd for `pid`, or None where the host has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
