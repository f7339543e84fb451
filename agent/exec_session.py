"""One task's blocks, run in order inside its sandbox session.

A block's code is saved as the task's uid will own it, started through the
sandbox tier with the limits, a scrubbed environment and a handshake pipe
(the tier writes "1" on it once the block's boundary is up, or "!" and the
reason it could not be set up), watched until it ends (block_watch.py), and
reported as an `ExecResult`.

With `python_state` "kernel" (the default) Python blocks run instead in the
task's kernel (kernel.py), one interpreter started through the tier the
same way by the first of them; bash and sh blocks are still processes of
their own. `close` (leaving `Executor.session`) stops the kernel.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .block_watch import BlockWatch, watch_block
from .exec_result import ExecResult, error_result, finished
from .kernel import LOST_NOTICE, PROGRAM, Kernel, KernelNotStarted
from .output import OutputCapture, Pipes
from .sandbox import Session
from .sandbox.usage import DiskUsage

if TYPE_CHECKING:
    from .executor import Executor

#: Bytes of the sandbox's handshake kept: "1", or "!" and why it failed.
_HANDSHAKE_CAP = 4096

#: coreutils' nice, which starts a program at a given niceness.
_NICE = shutil.which("nice", path="/usr/bin:/bin")


def canonical_language(language: str) -> str:
    """The name a block's language is known by here ("py" is "python")."""
    lang = (language or "").strip().lower()
    return "python" if lang in ("python", "python3", "py") else lang


class ExecSession:
    """Runs the blocks of one task, in order, in its sandbox session."""

    def __init__(self, executor: Executor, session: Session):
        self.executor = executor
        self.limits = executor.limits
        self.session = session
        self.workspace = session.workspace
        self.kernel: Kernel | None = None
        #: A kernel ended with a block: the next Python block says so.
        self.kernel_lost = False
        #: The niceness what this session starts runs at: a kernel started
        #: ahead of its task yields the CPU to tasks' work (warm_kernels.py).
        self.niceness = 0

    def run(self, language: str, code: str, *, filename: str | None = None,
            cancelled: Callable[[], bool] = lambda: False) -> ExecResult:
        """Run `code` with the workspace as its folder; never raises for
        anything the code does."""
        started = time.monotonic()
        lang = canonical_language(language)
        interpreter = self.executor.interpreters.get(lang)
        if interpreter is None:
            return error_result(f"language {language!r} is not runnable here; runnable: "
                                f"{', '.join(self.executor.interpreters)}", started)
        script: Path | None = None
        if filename is not None:
            script = self._target(filename)
            if script is None:
                return error_result(f"refused to run: filename {filename!r} must be a relative path "
                                    f"inside the workspace", started)
        if cancelled():
            return ExecResult("cancelled", "[cancelled before start]", "", "", None, 0)
        if lang == "python" and self.limits.python_state == "kernel" and not self.session.opened:
            self._take_warm_kernel()
        try:
            self.session.open()
        except (OSError, RuntimeError) as exc:  # no uid free, workspace unusable
            return self._not_started(lang, f"could not prepare the sandbox: {exc}", started)
        if lang == "python" and self.limits.python_state == "kernel":
            return self._run_in_kernel(code, script, cancelled, started)
        scratch = Path(tempfile.mkdtemp(prefix="aipy-exec-"))
        try:
            self.session.give(scratch)
            if script is None:
                script = scratch / ("block.py" if lang == "python" else "block.sh")
            try:
                self._save(script, code)
            except OSError as exc:
                return error_result(f"could not save the code block: {exc}", started)
            return self._spawn(lang, interpreter, script, scratch, cancelled, started)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        """Stop the kernel, if one runs (the sandbox session then kills
        whatever the task's uid still runs)."""
        if self.kernel is not None:
            self.kernel.stop()
        self._drop_kernel(lost=False)

    def _run_in_kernel(self, code: str, script: Path | None, cancelled: Callable[[], bool],
                       started: float) -> ExecResult:
        """Run a Python block in the task's kernel, started first if none runs."""
        lim = self.limits
        if self.kernel is not None and not self.kernel.alive():  # killed while it waited
            self._drop_kernel(lost=True)
        try:
            scratch = self.kernel.scratch if self.kernel else self.kernel_scratch()
        except OSError as exc:
            return self._not_started("python", f"could not prepare the kernel: {exc}", started)
        usage = DiskUsage((self.workspace, scratch), lim.workspace_bytes)
        watch = BlockWatch(started, lim.timeout_s, lim.poll_interval_s, cancelled, usage)
        if self.kernel is None:
            try:
                self.start_kernel(scratch, watch)
            except KernelNotStarted as exc:
                if exc.status is None:
                    return self._not_started("python", str(exc), started)
                return finished(exc.status, None, "", "", started, lim)
        if script is None:
            script = scratch / f"block-{self.kernel.blocks + 1}.py"
        try:
            self._save(script, code)
        except OSError as exc:
            return error_result(f"could not save the code block: {exc}", started)
        notice, self.kernel_lost = (LOST_NOTICE[lim.lang] if self.kernel_lost else None), False
        out, err = OutputCapture(lim.output_cap_bytes), OutputCapture(lim.output_cap_bytes)
        request = {"file": str(self.session.seen(script)), "path0": self._path0(script, scratch),
                   "cwd": str(self.session.inside), "cpu_s": lim.block_cpu_s}
        if self.kernel.blocks == 0:  # a warm kernel was started with its slot as HOME
            request["home"] = str(self.session.inside)
        end = self.kernel.run(request, watch, out, err, lim.output_cap_bytes)
        if end.kernel_lost:
            self._drop_kernel(lost=True)
        return finished(end.status, end.returncode, out.text(), err.text(), started, lim, value=end.value,
                        notice=notice)

    def start_kernel(self, scratch: Path, watch: BlockWatch) -> Kernel:
        """Start the task's kernel in `scratch` (from `kernel_scratch`, which
        is removed if it fails), waiting under `watch` until it is ready.
        Raises KernelNotStarted."""
        spawn = functools.partial(self._start, "kernel", self.executor.interpreters["python"],
                                  scratch / "kernel.py", scratch)
        try:
            self.kernel = Kernel.start(self.session, spawn, watch, scratch)
        except KernelNotStarted:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return self.kernel

    def _take_warm_kernel(self) -> None:
        """Before the task's first block, take a kernel that was started
        for no task yet (warm_kernels.py), if one is ready and was started
        with this task's limits: its session becomes this one."""
        pool = self.executor.warm
        warm = pool.take(self.limits) if pool is not None else None
        if warm is None:
            return
        try:
            self.session.adopt(warm.session)
        except OSError:  # the workspace is gone: the task was deleted
            warm.end()
            return
        self.kernel = warm.release()
        self.kernel.session = self.session

    def _path0(self, script: Path, scratch: Path) -> str:
        """sys.path[0] for `script`, as the code sees it: the workspace for a
        block's own file in the scratch folder, else the named file's folder."""
        return str(self.session.seen(self.workspace if script.parent == scratch else script.parent))

    def kernel_scratch(self) -> Path:
        """A new kernel's scratch folder (its TMPDIR, its program, the files
        of unnamed blocks), the task uid's."""
        scratch = Path(tempfile.mkdtemp(prefix="aipy-kernel-"))
        try:
            self.session.give(scratch)
            self._save(scratch / "kernel.py", PROGRAM)
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return scratch

    def _drop_kernel(self, *, lost: bool) -> None:
        """Forget the kernel (killed already, or killed now) and its scratch
        folder; `lost`: the next Python block is told its state is gone."""
        if self.kernel is not None:
            self.kernel.kill()
            shutil.rmtree(self.kernel.scratch, ignore_errors=True)
            self.kernel = None
        self.kernel_lost = lost

    def _end_block(self) -> None:
        """After a fresh block: kill what it left, sparing the kernel, which
        is frozen again (code of the task's uid could have woken it)."""
        if self.kernel is None:
            self.session.end_block()
            return
        self.kernel.freeze()
        self.session.end_block(spare=self.kernel.pid)

    def _target(self, filename: str) -> Path | None:
        """Resolve a model-chosen name inside the workspace, or None if it
        could escape it (absolute, `..`, symlink out, NUL) -- the model must
        not be able to overwrite server files by naming a block."""
        if not filename or "\0" in filename or os.path.isabs(filename):
            return None
        root = self.workspace.resolve()
        target = (root / filename).resolve()
        if target == root or root not in target.parents or target.is_dir():
            return None
        return target

    def _env(self, scratch: Path) -> dict[str, str]:
        """Allow-list only: the server's LLM keys and tokens must never reach
        model-written code, which could print or exfiltrate them."""
        env = {k: os.environ[k] for k in self.limits.env_allow if k in os.environ}
        env.update(HOME=str(self.session.inside), TMPDIR=str(scratch), PYTHONIOENCODING="utf-8",
                   PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        return env

    def _save(self, path: Path, code: str) -> None:
        """Write the block's file as its task's uid will own it. Written under
        a fresh name and renamed into place, so a link the code left at the
        name is replaced, never written through."""
        folder = path.parent
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for made in reversed(missing):
            made.mkdir()
            self.session.give(made)
        temp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(code)
            if self.session.uid is not None:
                os.chown(temp, self.session.uid, self.session.uid)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _spawn(self, lang: str, interpreter: str, script: Path, scratch: Path,
               cancelled: Callable[[], bool], started: float) -> ExecResult:
        lim = self.limits
        ready_r, ready_w = os.pipe()
        try:
            proc = self._start(lang, interpreter, script, scratch, ready_w)
        except OSError as exc:
            os.close(ready_r)
            return self._not_started(lang, str(exc), started)
        finally:
            os.close(ready_w)
        out, err = OutputCapture(lim.output_cap_bytes), OutputCapture(lim.output_cap_bytes)
        ready = OutputCapture(_HANDSHAKE_CAP)
        pipes = Pipes()
        pipes.add(proc.stdout, out)  # type: ignore[arg-type]
        pipes.add(proc.stderr, err)  # type: ignore[arg-type]
        usage = DiskUsage((self.workspace, scratch), lim.workspace_bytes)
        watch = BlockWatch(started, lim.timeout_s, lim.poll_interval_s, cancelled, usage)
        with os.fdopen(ready_r, "rb", buffering=0) as ready_pipe:
            pipes.add(ready_pipe, ready)
            status = watch_block(proc, pipes, watch, self._end_block)
        return self._result(lang, status, proc.returncode, out, err, ready.data(), started)

    def _start(self, lang: str, interpreter: str, script: Path, scratch: Path, ready_w: int,
               control_fd: int | None = None) -> subprocess.Popen:
        """Start the block (lang "kernel": the kernel, talking on
        `control_fd`) through the sandbox tier, in a process group of its
        own; raises OSError when it cannot be started."""
        lim = self.limits
        kernel = lang == "kernel"
        self.session.starting()
        argv, user = self.executor.sandbox.command(
            mode=lang if lang in ("python", "kernel") else interpreter, script=str(self.session.seen(script)),
            path0=self._path0(script, scratch),
            limits=lim.kernel_rlimits() if kernel else lim.rlimits(), workspace=self.workspace, scratch=scratch,
            hide=list(lim.hide_paths), uid=self.session.uid, ready_fd=ready_w, tmp_bytes=lim.workspace_bytes,
            control_fd=control_fd, inside=self.session.inside)
        ids = {} if user is None else {"user": user, "group": user, "extra_groups": []}
        if self.niceness and _NICE:  # set before it starts, so all it forks inherits it
            argv = [_NICE, "-n", str(self.niceness), *argv]
        # A kernel's output goes to the pipes of each block (kernel.py); its
        # own stderr shows only why it could not start.
        return subprocess.Popen(argv, cwd=self.workspace, env=self._env(scratch), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL if kernel else subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, pass_fds=(ready_w,) if control_fd is None
                                else (ready_w, control_fd), **ids)

    def _result(self, lang: str, status: str | None, returncode: int | None, out: OutputCapture,
                err: OutputCapture, handshake: bytes, started: float) -> ExecResult:
        text_out, text_err = out.text(), err.text()
        if not handshake.startswith(b"1") or b"!" in handshake:
            reason = handshake.partition(b"!")[2].decode(errors="replace") or text_err.strip()[-500:] \
                or f"exit status {returncode}"
            if status not in ("timeout", "cancelled"):
                return self._not_started(lang, reason, started)
        return finished(status, returncode, text_out, text_err, started, self.limits)

    def _not_started(self, lang: str, reason: str, started: float) -> ExecResult:
        why = f"the sandbox ({self.executor.sandbox.tier}) could not start a {lang} block: {reason}"
        return error_result(why, started, not_started=why)
