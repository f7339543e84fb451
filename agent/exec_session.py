"""One task's blocks, run in order inside its sandbox session.

A block's code is saved as the task's uid will own it, started through the
sandbox tier with the limits, a scrubbed environment and a handshake pipe
(the tier writes "1" on it once the block's boundary is up, or "!" and the
reason it could not be set up), watched until it ends (block_watch.py), and
reported as an `ExecResult`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .block_watch import BlockWatch, watch_block
from .exec_result import ExecResult, elapsed_ms, error_result
from .output import OutputCapture, Pipes
from .sandbox import Session
from .sandbox.usage import DiskUsage

if TYPE_CHECKING:
    from .executor import Executor

#: Bytes of the sandbox's handshake kept: "1", or "!" and why it failed.
_HANDSHAKE_CAP = 4096


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
        try:
            self.session.open()
        except (OSError, RuntimeError) as exc:  # no uid free, workspace unusable
            return self._not_started(lang, f"could not prepare the sandbox: {exc}", started)
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
        env.update(HOME=str(self.workspace), TMPDIR=str(scratch), PYTHONIOENCODING="utf-8",
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
            status = watch_block(proc, pipes, watch, self.session.end_block)
        return self._result(lang, status, proc.returncode, out, err, ready.data(), started)

    def _start(self, lang: str, interpreter: str, script: Path, scratch: Path, ready_w: int) -> subprocess.Popen:
        """Start the block through the sandbox tier, in a process group of its
        own; raises OSError when it cannot be started."""
        lim = self.limits
        path0 = str(self.workspace if script.parent == scratch else script.parent)
        argv, user = self.executor.sandbox.command(
            mode="python" if lang == "python" else interpreter, script=str(script), path0=path0,
            limits=lim.rlimits(), workspace=self.workspace, scratch=scratch, hide=list(lim.hide_paths),
            uid=self.session.uid, ready_fd=ready_w, tmp_bytes=lim.workspace_bytes)
        ids = {} if user is None else {"user": user, "group": user, "extra_groups": []}
        return subprocess.Popen(argv, cwd=self.workspace, env=self._env(scratch), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                pass_fds=(ready_w,), **ids)

    def _result(self, lang: str, status: str | None, returncode: int | None, out: OutputCapture,
                err: OutputCapture, handshake: bytes, started: float) -> ExecResult:
        text_out, text_err = out.text(), err.text()
        if not handshake.startswith(b"1") or b"!" in handshake:
            reason = handshake.partition(b"!")[2].decode(errors="replace") or text_err.strip()[-500:] \
                or f"exit status {returncode}"
            if status not in ("timeout", "cancelled"):
                return self._not_started(lang, reason, started)
        output = text_out
        if text_err:
            output += ("\n" if output and not output.endswith("\n") else "") + text_err
        final, note = self._ending(status, returncode)
        return ExecResult(final, output + note, text_out, text_err, returncode, elapsed_ms(started))

    def _ending(self, status: str | None, returncode: int | None) -> tuple[str, str]:
        """The result's status, and the note added to its output, for how
        the watch ended."""
        lim = self.limits
        if status == "timeout":
            return status, f"\n[timed out after {lim.timeout_s:g} s limit; all its processes killed]"
        if status == "cancelled":
            return status, "\n[cancelled; all its processes killed]"
        if status == "over_disk":
            return "error", (f"\n[stopped: the workspace grew past its {lim.max_workspace_mb} MB limit; "
                             "all its processes killed]")
        return ("success" if returncode == 0 else "error"), ""

    def _not_started(self, lang: str, reason: str, started: float) -> ExecResult:
        why = f"the sandbox ({self.executor.sandbox.tier}) could not start a {lang} block: {reason}"
        return error_result(why, started, not_started=why)
