"""Run LLM-written code blocks, untrusted, inside the sandbox (see sandbox/).

The code comes from a model that may be steered by whatever text it read, so
it is treated as hostile: it may loop forever, eat memory or disk, flood its
output, fork helpers that try to outlive it, or go after the server, its
secrets and the other tasks. Each block therefore runs through the chosen
sandbox tier, under the task's own identity, with resource limits, a scrubbed
environment, capped output, a wall-clock timeout, a workspace size limit and
a cancel probe; and everything it started is killed before `run` returns.

A task's blocks share one `ExecSession` (`Executor.session`): the session
holds the uid leased for the task and owns the workspace while it runs.
"""

from __future__ import annotations

import math
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from config.models import EngineSettings

from .sandbox import Sandbox, Session, choose_sandbox
from .sandbox.usage import DiskUsage

RESULT_STATUSES = ("success", "error", "timeout", "cancelled")

#: After the main child exits, how long a grandchild may keep our pipes open
#: before we stop waiting for EOF and kill the group.
_EXIT_GRACE_S = 0.2

#: How often the workspace's size is measured while a block runs.
_USAGE_CHECK_S = 1.0

_MB = 1024 * 1024
_DEFAULTS = EngineSettings()


@dataclass(frozen=True)
class ExecLimits:
    """Per-block limits and the sandbox policy (defaults: `EngineSettings`)."""

    timeout_s: float = _DEFAULTS.exec_timeout_s
    memory_mb: int = _DEFAULTS.memory_mb              # RLIMIT_AS, per process
    max_file_mb: int = _DEFAULTS.max_file_mb          # RLIMIT_FSIZE
    max_processes: int = _DEFAULTS.max_processes      # RLIMIT_NPROC: per task with a uid of its own
    max_open_files: int = _DEFAULTS.max_open_files    # RLIMIT_NOFILE
    max_workspace_mb: int = _DEFAULTS.max_workspace_mb
    output_cap_bytes: int = _DEFAULTS.output_cap_bytes  # per stream (stdout, stderr)
    env_allow: tuple[str, ...] = tuple(_DEFAULTS.env_allow)
    poll_interval_s: float = _DEFAULTS.cancel_poll_s  # how often the cancel probe is polled
    sandbox: str = _DEFAULTS.sandbox                  # auto | bubblewrap | process
    network: str = _DEFAULTS.network                  # full | none
    python: str | None = _DEFAULTS.python
    uids: range = field(default_factory=_DEFAULTS.sandbox_uids)
    hide_paths: tuple[str, ...] = ()                  # host folders masked by the bubblewrap tier

    def rlimits(self) -> dict[str, int]:
        return {
            "RLIMIT_AS": self.memory_mb * _MB,
            "RLIMIT_FSIZE": self.max_file_mb * _MB,
            "RLIMIT_NPROC": self.max_processes,
            "RLIMIT_NOFILE": self.max_open_files,
            # CPU seconds can only trail wall-clock seconds per process; this
            # is a backstop should the wall-clock watch ever be missed.
            "RLIMIT_CPU": math.ceil(self.timeout_s) + 1,
            "RLIMIT_CORE": 0,
        }


@dataclass
class ExecResult:
    """What one block did; `output` is the text shown back to the model.
    `not_started` (not part of the event) says why the sandbox could not
    start the block at all: the engine then fails the task."""

    status: str             # success | error | timeout | cancelled
    output: str             # stdout, then stderr (if any) after it
    stdout: str
    stderr: str
    returncode: int | None  # None when the block never ran
    duration_ms: int
    not_started: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["not_started"]
        return data


class _Capture:
    """Keeps the first `cap` bytes of a stream but counts everything, so the
    child can be drained forever without the server's memory growing."""

    def __init__(self, cap: int) -> None:
        self.cap, self.total, self.chunks = cap, 0, []  # type: ignore[var-annotated]

    def add(self, data: bytes) -> None:
        room = self.cap - min(self.total, self.cap)
        if room > 0:
            self.chunks.append(data[:room])
        self.total += len(data)

    def text(self) -> str:
        text = b"".join(self.chunks).decode("utf-8", errors="replace")
        if self.total > self.cap:
            text += f"\n[... output truncated: {self.total} bytes total, first {self.cap} kept ...]"
        return text


def _error(message: str, started: float, *, not_started: str | None = None) -> ExecResult:
    return ExecResult("error", message, "", "", None, int((time.monotonic() - started) * 1000), not_started)


# -- choosing the sandbox once per process ----------------------------------

_chosen: dict[tuple, Sandbox] = {}
_choosing = threading.Lock()


def sandbox_for(limits: ExecLimits, probe_dir: Path | None = None) -> Sandbox:
    """The sandbox these limits ask for, chosen (self-test included) once per
    process and policy. The self-test's workspace is made in `probe_dir`
    (where the real ones will live; default: the temp folder). Raises
    SandboxUnavailable."""
    key = (limits.sandbox, limits.network, limits.python, limits.uids, probe_dir)
    with _choosing:
        if key not in _chosen:
            _chosen[key] = choose_sandbox(limits.sandbox, network=limits.network, python=limits.python,
                                          uids=limits.uids, probe=lambda box: self_test(box, probe_dir),
                                          workspaces=probe_dir)
        return _chosen[key]


def self_test(sandbox: Sandbox, probe_dir: Path | None = None) -> str | None:
    """Run a real Python block through `sandbox` in a fresh folder of
    `probe_dir`; None when it worked."""
    try:
        workspace = Path(tempfile.mkdtemp(prefix=".selftest-", dir=probe_dir))
    except OSError as exc:
        return f"cannot make a test workspace in {probe_dir}: {exc.strerror}"
    try:
        limits = ExecLimits(timeout_s=30, max_processes=64)
        result = Executor(limits, sandbox).run("python", "import os\nprint(6 * 7, os.getuid())", workspace)
    except Exception as exc:  # a tier that cannot even be set up
        return f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    if result.not_started:
        return result.not_started
    words = result.stdout.split()
    if result.status != "success" or not words or words[0] != "42":
        return f"the test block failed ({result.status}): {result.output.strip()[-300:]}"
    if os.geteuid() == 0 and words[1:] == ["0"]:
        return "the test block ran as root"
    return None


class Executor:
    """Runs code blocks one subprocess each; safe to share between threads
    (all per-run state lives in sessions and `run`)."""

    def __init__(self, limits: ExecLimits = ExecLimits(), sandbox: Sandbox | None = None) -> None:
        self.limits = limits
        self.sandbox = sandbox or sandbox_for(limits)
        self._interpreters: dict[str, str] = {"python": self.sandbox.python}
        for shell in ("bash", "sh"):
            path = shutil.which(shell)
            if path:
                self._interpreters[shell] = path

    @staticmethod
    def _canonical(language: str) -> str:
        lang = (language or "").strip().lower()
        return "python" if lang in ("python", "python3", "py") else lang

    def runnable(self, language: str) -> bool:
        return self._canonical(language) in self._interpreters

    @contextmanager
    def session(self, workspace: Path) -> Iterator["ExecSession"]:
        """One task's blocks: they share its uid and workspace."""
        with self.sandbox.session(Path(workspace).absolute()) as session:
            yield ExecSession(self, session)

    def run(self, language: str, code: str, workspace: Path, *, filename: str | None = None,
            cancelled: Callable[[], bool] = lambda: False) -> ExecResult:
        """Run one block in a session of its own; never raises for anything
        the code does."""
        started = time.monotonic()
        try:
            Path(workspace).mkdir(parents=True, exist_ok=True)
            with self.session(workspace) as session:
                return session.run(language, code, filename=filename, cancelled=cancelled)
        except (OSError, RuntimeError) as exc:  # no uid free, workspace unusable
            return _error(f"could not prepare the sandbox: {exc}", started, not_started=str(exc))


class ExecSession:
    """Runs the blocks of one task, in order, in its sandbox session."""

    def __init__(self, executor: Executor, session: Session):
        self.executor = executor
        self.limits = executor.limits
        self.session = session
        self.workspace = session.workspace

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

    def run(self, language: str, code: str, *, filename: str | None = None,
            cancelled: Callable[[], bool] = lambda: False) -> ExecResult:
        """Run `code` with the workspace as its folder; never raises for
        anything the code does."""
        started = time.monotonic()
        lang = self.executor._canonical(language)
        interpreter = self.executor._interpreters.get(lang)
        if interpreter is None:
            return _error(f"language {language!r} is not runnable here; runnable: "
                          f"{', '.join(self.executor._interpreters)}", started)
        script: Path | None = None
        if filename is not None:
            script = self._target(filename)
            if script is None:
                return _error(f"refused to run: filename {filename!r} must be a relative path "
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
                return _error(f"could not save the code block: {exc}", started)
            return self._spawn(lang, interpreter, script, scratch, cancelled, started)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _spawn(self, lang: str, interpreter: str, script: Path, scratch: Path,
               cancelled: Callable[[], bool], started: float) -> ExecResult:
        lim = self.limits
        path0 = str(self.workspace if script.parent == scratch else script.parent)
        ready_r, ready_w = os.pipe()
        try:
            argv, user = self.executor.sandbox.command(
                mode="python" if lang == "python" else interpreter, script=str(script), path0=path0,
                limits=lim.rlimits(), workspace=self.workspace, scratch=scratch, hide=list(lim.hide_paths),
                uid=self.session.uid, ready_fd=ready_w, tmp_bytes=lim.max_workspace_mb * _MB)
            ids = {} if user is None else {"user": user, "group": user, "extra_groups": []}
            proc = subprocess.Popen(argv, cwd=self.workspace, env=self._env(scratch), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                    pass_fds=(ready_w,), **ids)
        except OSError as exc:
            os.close(ready_r)
            return self._not_started(lang, str(exc), started)
        finally:
            os.close(ready_w)
        out, err = _Capture(lim.output_cap_bytes), _Capture(lim.output_cap_bytes)
        ready = _Capture(4096)
        usage = DiskUsage((self.workspace, scratch), lim.max_workspace_mb * _MB)
        with os.fdopen(ready_r, "rb", buffering=0) as ready_pipe:
            status = self._wait(proc, out, err, ready, ready_pipe, usage, cancelled, started)
        returncode = proc.returncode
        text_out, text_err = out.text(), err.text()
        handshake = b"".join(ready.chunks)
        if not handshake.startswith(b"1") or b"!" in handshake:
            reason = handshake.partition(b"!")[2].decode(errors="replace") or text_err.strip()[-500:] \
                or f"exit status {returncode}"
            if status not in ("timeout", "cancelled"):
                return self._not_started(lang, reason, started)
        output = text_out
        if text_err:
            output += ("\n" if output and not output.endswith("\n") else "") + text_err
        if status == "timeout":
            output += f"\n[timed out after {lim.timeout_s:g} s limit; all its processes killed]"
        elif status == "cancelled":
            output += "\n[cancelled; all its processes killed]"
        elif status == "over_disk":
            status = "error"
            output += (f"\n[stopped: the workspace grew past its {lim.max_workspace_mb} MB limit; "
                       "all its processes killed]")
        else:
            status = "success" if returncode == 0 else "error"
        return ExecResult(status, output, text_out, text_err, returncode,
                          int((time.monotonic() - started) * 1000))

    def _not_started(self, lang: str, reason: str, started: float) -> ExecResult:
        why = f"the sandbox ({self.executor.sandbox.tier}) could not start a {lang} block: {reason}"
        return _error(why, started, not_started=why)

    def _wait(self, proc: subprocess.Popen, out: _Capture, err: _Capture, ready: _Capture, ready_pipe,
              usage: DiskUsage, cancelled: Callable[[], bool], started: float) -> str | None:
        """Drain the pipes until EOF, reacting to exit, timeout, cancel and
        disk use without fixed sleeps. Returns "timeout", "cancelled",
        "over_disk" or None, and always leaves the group killed and the child
        reaped."""
        lim = self.limits
        deadline = started + lim.timeout_s
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)  # type: ignore[arg-type]
        sel.register(proc.stderr, selectors.EVENT_READ, err)  # type: ignore[arg-type]
        sel.register(ready_pipe, selectors.EVENT_READ, ready)
        status: str | None = None
        next_probe = exited_at = 0.0
        next_usage = started + _USAGE_CHECK_S
        try:
            while sel.get_map():
                now = time.monotonic()
                if now >= next_probe:
                    next_probe = now + lim.poll_interval_s
                    if cancelled():
                        status = "cancelled"
                        break
                if now >= deadline:
                    status = "timeout"
                    break
                if now >= next_usage:
                    next_usage = now + _USAGE_CHECK_S
                    if usage.over():
                        status = "over_disk"
                        break
                if not exited_at and _exited(proc):
                    exited_at = now
                if exited_at and now - exited_at >= _EXIT_GRACE_S:
                    break  # a grandchild holds the pipes; stop waiting for EOF
                wait = min(next_probe, deadline, next_usage) - now
                if exited_at:
                    wait = min(wait, exited_at + _EXIT_GRACE_S - now)
                for key, _ in sel.select(max(wait, 0.0)):
                    _read(sel, key)
        finally:
            # Kill before reaping: while the zombie leader holds the pid, the
            # pgid cannot be reused by an unrelated process. With a uid of its
            # own, the session then kills whatever left the group.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.session.end_block()
            # Keep what was written before the kill; bounded, since a process
            # that escaped the group (setsid) could keep writing forever.
            drain_until = time.monotonic() + 0.05
            while sel.get_map() and time.monotonic() < drain_until:
                ready_keys = sel.select(0)
                if not ready_keys:
                    break
                for key, _ in ready_keys:
                    _read(sel, key)
            sel.close()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
            proc.wait()
        if status is None and usage.over():
            status = "over_disk"
        return status


def _exited(proc: subprocess.Popen) -> bool:
    """Has the child exited? Uses WNOWAIT so the zombie keeps its pid (and
    thus the group id) reserved until after the final killpg."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _read(sel: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
    data = os.read(key.fd, 65536)
    if data:
        key.data.add(data)
    else:
        sel.unregister(key.fileobj)


def protect_from_children() -> None:
    """Make this process non-dumpable, so code it runs as the same user
    cannot read its memory or /proc/<pid>/environ (where the LLM keys are).
    Linux only, best effort; it does not bind root, which is why a root
    service runs code under uids of their own (see sandbox/identity.py)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_PR_SET_DUMPABLE = 4
