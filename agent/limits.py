"""What a code block may use: the limits and sandbox policy the executor
applies. `EngineSettings` is the one source of their values and defaults;
`ExecLimits.from_settings` is how limits are made."""

from __future__ import annotations

import math
from dataclasses import dataclass

from config.models import EngineSettings

MB = 1024 * 1024


@dataclass(frozen=True)
class ExecLimits:
    """Per-block limits and the sandbox policy, each named after the
    `EngineSettings` field it comes from where the names differ."""

    timeout_s: float                # exec_timeout_s: wall clock per block
    memory_mb: int                  # RLIMIT_AS, per process
    max_file_mb: int                # RLIMIT_FSIZE
    max_processes: int              # RLIMIT_NPROC: per task with a uid of its own
    max_open_files: int             # RLIMIT_NOFILE
    max_workspace_mb: int           # the workspace and scratch folder together
    output_cap_bytes: int           # per stream (stdout, stderr)
    env_allow: tuple[str, ...]      # server variables the code may inherit
    poll_interval_s: float          # cancel_poll_s: how often the cancel probe is polled
    sandbox: str                    # auto | bubblewrap | process
    network: str                    # full | none
    python: str | None              # None: the server's own interpreter
    uids: range                     # sandbox_uids(): leased to tasks by a root service
    hide_paths: tuple[str, ...]     # sandbox_hide: host folders masked by the bubblewrap tier
    python_state: str               # kernel | fresh: one interpreter per task, or per Python block
    task_timeout_s: float           # how long a task, and so its kernel, may run
    lang: str                       # en | zh: the words of the notes the model reads

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> "ExecLimits":
        """The limits that `settings` call for."""
        return cls(
            timeout_s=settings.exec_timeout_s,
            memory_mb=settings.memory_mb,
            max_file_mb=settings.max_file_mb,
            max_processes=settings.max_processes,
            max_open_files=settings.max_open_files,
            max_workspace_mb=settings.max_workspace_mb,
            output_cap_bytes=settings.output_cap_bytes,
            env_allow=tuple(settings.env_allow),
            poll_interval_s=settings.cancel_poll_s,
            sandbox=settings.sandbox,
            network=settings.network,
            python=settings.python,
            uids=settings.sandbox_uids(),
            hide_paths=tuple(settings.sandbox_hide),
            python_state=settings.python_state,
            task_timeout_s=settings.task_timeout_s,
            lang=settings.lang,
        )

    @property
    def workspace_bytes(self) -> int:
        return self.max_workspace_mb * MB

    def rlimits(self) -> dict[str, int]:
        """The resource limits every process of a block starts with."""
        return {
            "RLIMIT_AS": self.memory_mb * MB,
            "RLIMIT_FSIZE": self.max_file_mb * MB,
            "RLIMIT_NPROC": self.max_processes,
            "RLIMIT_NOFILE": self.max_open_files,
            # CPU seconds can only trail wall-clock seconds per process; this
            # is a backstop should the wall-clock watch ever be missed.
            "RLIMIT_CPU": self.block_cpu_s,
            "RLIMIT_CORE": 0,
        }

    @property
    def block_cpu_s(self) -> int:
        """CPU seconds a block's process may use."""
        return math.ceil(self.timeout_s) + 1

    def kernel_rlimits(self) -> dict[str, int]:
        """The resource limits a task's kernel starts with: those of a block,
        but the CPU time of the whole task as the hard limit, since the
        kernel lives as long as its task. It lowers its own soft limit to
        `block_cpu_s` beyond what it used, for each block it runs."""
        return {**self.rlimits(), "RLIMIT_CPU": math.ceil(max(self.task_timeout_s, self.timeout_s)) + 1}

    def kernel_start_key(self) -> tuple:
        """What a kernel is started with: two limits with the same key may
        share a kernel started before its task (warm_kernels.py)."""
        return (tuple(self.kernel_rlimits().items()), self.workspace_bytes, self.env_allow, self.sandbox,
                self.network, self.python, self.uids, self.hide_paths, self.python_state)
