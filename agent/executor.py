"""Run LLM-written code blocks, untrusted, inside the sandbox (see sandbox/).

The code comes from a model that may be steered by whatever text it read, so
it is treated as hostile: it may loop forever, eat memory or disk, flood its
output, fork helpers that try to outlive it, or go after the server, its
secrets and the other tasks. Each block therefore runs through the chosen
sandbox tier, under the task's own identity, with resource limits, a scrubbed
environment, capped output, a wall-clock timeout, a workspace size limit and
a cancel probe; and everything it started is killed before `run` returns.

A task's blocks share one `ExecSession` (`Executor.session`, exec_session.py):
the session holds the uid leased for the task and owns the workspace while
it runs, and, with `python_state` "kernel" (the default), the task's Python
kernel (kernel.py), which leaving the session stops. The limits come from
`EngineSettings` (limits.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from config.models import EngineSettings

from .exec_result import ExecResult, error_result
from .exec_session import ExecSession, canonical_language
from .limits import ExecLimits
from .sandbox import Sandbox, choose_sandbox

if TYPE_CHECKING:
    from .warm_kernels import WarmKernels

__all__ = ["ExecLimits", "ExecResult", "ExecSession", "Executor", "sandbox_for", "self_test"]


class Executor:
    """Runs code blocks, each in a subprocess of its own or (Python blocks
    in kernel mode) in the task's kernel; safe to share between threads
    (all per-run state lives in sessions and `run`). `limits` default to
    those of a default `EngineSettings`; `sandbox` to the tier they ask for
    (see `sandbox_for`)."""

    def __init__(self, limits: ExecLimits | None = None, sandbox: Sandbox | None = None,
                 warm: WarmKernels | None = None) -> None:
        self.limits = limits or ExecLimits.from_settings(EngineSettings())
        self.sandbox = sandbox or sandbox_for(self.limits)
        #: Kernels started ahead of their tasks, which a task's first Python
        #: block takes when one is ready (warm_kernels.py); None: none kept.
        self.warm = warm
        #: Language name -> the program that runs its blocks here.
        self.interpreters: dict[str, str] = {"python": self.sandbox.python}
        for shell in ("bash", "sh"):
            path = shutil.which(shell)
            if path:
                self.interpreters[shell] = path

    def runnable(self, language: str) -> bool:
        return canonical_language(language) in self.interpreters

    @contextmanager
    def session(self, workspace: Path) -> Iterator[ExecSession]:
        """One task's blocks: they share its uid, workspace and kernel.
        Leaving stops the kernel, then kills whatever the task left."""
        with self.sandbox.session(Path(workspace).absolute()) as session:
            blocks = ExecSession(self, session)
            try:
                yield blocks
            finally:
                blocks.close()

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
            return error_result(f"could not prepare the sandbox: {exc}", started, not_started=str(exc))


# -- choosing the sandbox once per process ----------------------------------

_chosen: dict[tuple, Sandbox] = {}
_choosing = threading.Lock()


def sandbox_for(limits: ExecLimits, probe_dir: Path | None = None) -> Sandbox:
    """The sandbox these limits ask for, chosen (self-test included) once per
    process and policy. The self-test's workspace is made in `probe_dir`
    (where the real ones will live; default: the temp folder). Raises
    SandboxUnavailable."""
    key = (limits.sandbox, limits.network, limits.python, limits.uids, limits.python_state, probe_dir)
    with _choosing:
        if key not in _chosen:
            _chosen[key] = choose_sandbox(limits.sandbox, network=limits.network, python=limits.python,
                                          uids=limits.uids, workspaces=probe_dir,
                                          probe=lambda box: self_test(box, probe_dir, limits.python_state))
        return _chosen[key]


#: The self-test's limits: fixed, whatever the service's own settings.
_SELF_TEST_SETTINGS = EngineSettings(exec_timeout_s=30, max_processes=64)


def self_test(sandbox: Sandbox, probe_dir: Path | None = None, python_state: str = "kernel") -> str | None:
    """Run a real Python block through `sandbox` in a fresh folder of
    `probe_dir` (default: the temp folder), in a kernel or a fresh
    interpreter as `python_state` says (default "kernel"); None when it worked."""
    try:
        workspace = Path(tempfile.mkdtemp(prefix=".selftest-", dir=probe_dir))
    except OSError as exc:
        return f"cannot make a test workspace in {probe_dir}: {exc.strerror}"
    try:
        limits = ExecLimits.from_settings(_SELF_TEST_SETTINGS.model_copy(update={"python_state": python_state}))
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
