"""Run one LLM-written code block, untrusted, in a sandboxed subprocess.

The code comes from a model, so it is treated as hostile-by-accident: it may
loop forever, eat memory, flood its output, fork helpers that outlive it, or
print the server's secrets if it can see them. Each block therefore runs in its
own process group with resource limits, a scrubbed environment, capped output,
a wall-clock timeout and a cancel probe, and the whole group is killed before
`Executor.run` returns.

Limits are applied by a tiny Python bootstrap (`python -c _BOOTSTRAP ...`)
rather than `preexec_fn`: `preexec_fn` is unsafe in a threaded server and
disables subprocess's fast vfork path, while the bootstrap costs only an
`import resource` in an interpreter we start anyway. For shell blocks the
bootstrap sets the limits and then `execv`s the shell, so limits are exact
(no per-shell `ulimit` flag or unit differences).
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

RESULT_STATUSES = ("success", "error", "timeout", "cancelled")

#: After the main child exits, how long a grandchild may keep our pipes open
#: before we stop waiting for EOF and kill the group.
_EXIT_GRACE_S = 0.2

#: Runs in the child before any user code. argv: AS FSIZE NPROC CORE MODE FILE
#: SYSPATH0. MODE is "python" or the path of a shell to exec. Frames from this
#: bootstrap ("<string>") are hidden from tracebacks so the model sees only its
#: own code, as with `python file.py`.
_BOOTSTRAP = """\
def _aipy_boot():
    import resource as R, os, signal, sys
    a = sys.argv
    for k, v in zip((R.RLIMIT_AS, R.RLIMIT_FSIZE, R.RLIMIT_NPROC, R.RLIMIT_CORE), map(int, a[1:5])):
        h = R.getrlimit(k)[1]
        if h != R.RLIM_INFINITY:
            v = min(v, h)
        R.setrlimit(k, (v, v))
    mode, f = a[5], a[6]
    if mode != "python":
        for s in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(signal, s):
                signal.signal(getattr(signal, s), signal.SIG_DFL)
        os.execv(mode, [mode, f])
    sys.path[0] = a[7]
    sys.argv[:] = [f]
    def hook(t, e, tb, _h=sys.__excepthook__):
        while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
            tb = tb.tb_next
        _h(t, e.with_traceback(tb) if isinstance(e, BaseException) else e, tb)
    sys.excepthook = hook
    g = sys.modules["__main__"].__dict__
    g["__file__"] = f
    with open(f, "rb") as fh:
        code = compile(fh.read(), f, "exec")
    del g["_aipy_boot"]
    exec(code, g)
_aipy_boot()
"""


@dataclass(frozen=True)
class ExecLimits:
    """Per-block sandbox limits (set from `config.models.EngineSettings`)."""

    timeout_s: float = 120.0
    memory_mb: int = 2048          # RLIMIT_AS
    max_file_mb: int = 1024        # RLIMIT_FSIZE
    max_processes: int = 512       # RLIMIT_NPROC
    output_cap_bytes: int = 65536  # per stream (stdout, stderr)
    env_allow: tuple[str, ...] = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
    poll_interval_s: float = 0.1   # how often the cancel probe is polled (must be <= 0.2)
    sandbox: str = "process"       # or "bubblewrap" (see bubblewrap_argv)
    hide_paths: tuple[str, ...] = ()  # folders masked inside the bubblewrap sandbox


@dataclass
class ExecResult:
    """What one block did; `output` is the text shown back to the model."""

    status: str             # success | error | timeout | cancelled
    output: str             # stdout, then stderr (if any) after it
    stdout: str
    stderr: str
    returncode: int | None  # None when the block never ran
    duration_ms: int

    def to_dict(self) -> dict:
        return asdict(self)


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


def _error(message: str, started: float) -> ExecResult:
    return ExecResult("error", message, "", "", None, int((time.monotonic() - started) * 1000))


class Executor:
    """Runs code blocks one subprocess each; safe to share between threads
    (all per-run state lives in `run`)."""

    def __init__(self, limits: ExecLimits = ExecLimits()) -> None:
        self.limits = limits
        self._bwrap = find_bwrap() if limits.sandbox == "bubblewrap" else None
        self._interpreters: dict[str, str] = {"python": sys.executable}
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

    def _target(self, workspace: Path, filename: str) -> Path | None:
        """Resolve a model-chosen name inside the workspace, or None if it
        could escape it (absolute, `..`, symlink out, NUL) -- the model must
        not be able to overwrite server files by naming a block."""
        if not filename or "\0" in filename or os.path.isabs(filename):
            return None
        root = workspace.resolve()
        target = (root / filename).resolve()
        if target == root or root not in target.parents or target.is_dir():
            return None
        return target

    def _env(self, workspace: Path, tmpdir: str) -> dict[str, str]:
        """Allow-list only: the server's LLM keys and tokens must never reach
        model-written code, which could print or exfiltrate them."""
        env = {k: os.environ[k] for k in self.limits.env_allow if k in os.environ}
        env.update(HOME=str(workspace), TMPDIR=tmpdir, PYTHONIOENCODING="utf-8",
                   PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        return env

    def run(self, language: str, code: str, workspace: Path, *, filename: str | None = None,
            cancelled: Callable[[], bool] = lambda: False) -> ExecResult:
        """Run `code` with cwd=`workspace`; never raises for anything the code does."""
        started = time.monotonic()
        lang = self._canonical(language)
        interpreter = self._interpreters.get(lang)
        if interpreter is None:
            return _error(f"language {language!r} is not runnable here; runnable: "
                          f"{', '.join(self._interpreters)}", started)
        workspace = Path(workspace).absolute()
        workspace.mkdir(parents=True, exist_ok=True)
        if filename is not None:
            script = self._target(workspace, filename)
            if script is None:
                return _error(f"refused to run: filename {filename!r} must be a relative path "
                              f"inside the workspace", started)
        if cancelled():
            return ExecResult("cancelled", "[cancelled before start]", "", "", None, 0)
        tmpdir = tempfile.mkdtemp(prefix="aipy-exec-")
        try:
            if filename is None:
                script = Path(tmpdir) / ("block.py" if lang == "python" else "block.sh")
            try:
                script.parent.mkdir(parents=True, exist_ok=True)
                script.write_text(code, encoding="utf-8")
            except OSError as exc:
                return _error(f"could not save the code block: {exc}", started)
            syspath0 = str(workspace if filename is None else script.parent)
            return self._spawn(lang, interpreter, script, syspath0, workspace, tmpdir,
                               cancelled, started)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def _spawn(self, lang: str, interpreter: str, script: Path, syspath0: str, workspace: Path,
               tmpdir: str, cancelled: Callable[[], bool], started: float) -> ExecResult:
        lim = self.limits
        mb = 1024 * 1024
        mode = "python" if lang == "python" else interpreter
        argv = [sys.executable, *(() if lang == "python" else ("-S",)), "-c", _BOOTSTRAP,
                str(lim.memory_mb * mb), str(lim.max_file_mb * mb), str(lim.max_processes), "0",
                mode, str(script), syspath0]
        if self._bwrap is not None:
            argv = bubblewrap_argv(self._bwrap, workspace, tmpdir, lim.hide_paths) + argv
        try:
            proc = subprocess.Popen(argv, cwd=workspace, env=self._env(workspace, tmpdir),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            return _error(f"could not start {lang}: {exc}", started)
        out, err = _Capture(lim.output_cap_bytes), _Capture(lim.output_cap_bytes)
        status = self._wait(proc, out, err, cancelled, started)
        returncode = proc.returncode
        text_out, text_err = out.text(), err.text()
        output = text_out
        if text_err:
            output += ("\n" if output and not output.endswith("\n") else "") + text_err
        if status == "timeout":
            output += f"\n[timed out after {lim.timeout_s:g} s limit; process group killed]"
        elif status == "cancelled":
            output += "\n[cancelled; process group killed]"
        else:
            status = "success" if returncode == 0 else "error"
        return ExecResult(status, output, text_out, text_err, returncode,
                          int((time.monotonic() - started) * 1000))

    def _wait(self, proc: subprocess.Popen, out: _Capture, err: _Capture,
              cancelled: Callable[[], bool], started: float) -> str | None:
        """Drain both pipes until EOF, reacting to exit, timeout and cancel
        without fixed sleeps. Returns "timeout"/"cancelled" or None, and
        always leaves the group killed and the child reaped."""
        lim = self.limits
        deadline = started + lim.timeout_s
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)  # type: ignore[arg-type]
        sel.register(proc.stderr, selectors.EVENT_READ, err)  # type: ignore[arg-type]
        status: str | None = None
        next_probe = exited_at = 0.0
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
                if not exited_at and _exited(proc):
                    exited_at = now
                if exited_at and now - exited_at >= _EXIT_GRACE_S:
                    break  # a grandchild holds the pipes; stop waiting for EOF
                wait = min(next_probe, deadline) - now
                if exited_at:
                    wait = min(wait, exited_at + _EXIT_GRACE_S - now)
                for key, _ in sel.select(max(wait, 0.0)):
                    _read(sel, key)
        finally:
            # Kill before reaping: while the zombie leader holds the pid, the
            # pgid cannot be reused by an unrelated process.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            # Keep what was written before the kill; bounded, since a process
            # that escaped the group (setsid) could keep writing forever.
            drain_until = time.monotonic() + 0.05
            while sel.get_map() and time.monotonic() < drain_until:
                ready = sel.select(0)
                if not ready:
                    break
                for key, _ in ready:
                    _read(sel, key)
            sel.close()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
            proc.wait()
        return status


def _exited(proc: subprocess.Popen) -> bool:
    """Has the child exited? Uses WNOWAIT so the zombie keeps its pid (and
    thus the group id) reserved until after the final killpg."""
    if hasattr(os, "waitid"):
        try:
            return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True
    return proc.poll() is not None


def _read(sel: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
    data = os.read(key.fd, 65536)
    if data:
        key.data.add(data)
    else:
        sel.unregister(key.fileobj)


def find_bwrap() -> str:
    """The bwrap program, or RuntimeError saying how to get it."""
    path = shutil.which("bwrap")
    if path is None:
        raise RuntimeError("sandbox 'bubblewrap' needs the bwrap program: install bubblewrap "
                           "(apt-get install bubblewrap) or set engine.sandbox to 'process'")
    return path


def bubblewrap_argv(bwrap: str, workspace: Path, tmpdir: str, hide: tuple[str, ...]) -> list[str]:
    """Run under bwrap: the host's files read-only, `hide` masked by empty
    tmpfs mounts, a private /tmp, only the workspace and the block's scratch
    folder writable, a PID namespace of its own (the server's processes and
    their environments are invisible), and death with the worker that
    started it (so a killed worker leaves no code behind)."""
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for path in hide:
        if os.path.isdir(path):
            argv += ["--tmpfs", os.path.abspath(path)]
    argv += ["--tmpfs", "/tmp", "--bind", tmpdir, tmpdir, "--bind", str(workspace), str(workspace),
             "--unshare-pid", "--die-with-parent", "--chdir", str(workspace), "--"]
    return argv


def protect_from_children() -> None:
    """Make this process non-dumpable, so code it runs as the same user
    cannot read its memory or /proc/<pid>/environ (where the LLM keys are).
    Linux only, best effort; root bypasses it, which is why the service
    should not run as root."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_PR_SET_DUMPABLE = 4
