"""What every entry point (`python -m app --agent`, `app.serve`,
`actors.worker`, `actors.clock`) does first, before it says anything: read
the configuration, set up logging and open the data folder, or fail.

A failure is a `StartupFailure`: one line for the operator and the exit
status, printed as `error: <line>` on stderr with no traceback (`report`).
CONFIG_ERROR (2) is for what the configuration or the command line must
fix: a bad file or AIPYTHON_* value, a missing --role file, no sandbox tier
that runs code here. HOST_ERROR (1) is for what the host refuses: a data
folder that cannot be opened or written (tried, not judged from permission
bits, which do not stop root), a port already taken.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Mapping

from agent import SandboxUnavailable
from config import AppConfig, ConfigError, load_config
from storage import StorageError, TaskStore

from .logs import setup_logging
from .system import TaskSystem

log = logging.getLogger("aipy.startup")

CONFIG_ERROR = 2
HOST_ERROR = 1


class StartupFailure(Exception):
    """Why this process cannot start, in one line, and its exit status."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def report(failure: StartupFailure) -> int:
    """Print `failure` as one `error:` line on stderr; its exit status."""
    print(f"error: {failure}", file=sys.stderr, flush=True)
    return failure.exit_code


def open_process(config_dir: str | os.PathLike | None = None, *, role: str | None = None,
                 overrides: Mapping[str, Any] | None = None) -> TaskSystem:
    """The configuration read (see config.load_config for the arguments),
    logging set up from it, and the task system around the data folder,
    which must take a write. Raises StartupFailure; starts nothing."""
    try:
        config = load_config(config_dir, role=role, overrides=overrides)
    except ConfigError as exc:
        raise StartupFailure(str(exc), CONFIG_ERROR) from None
    settings = config.settings
    setup_logging(settings.debug, settings.debug_libraries)
    log.debug("Configuration from %s (LLM provider %s); data folder %s; %s", config.config_dir,
              config.llm.default, settings.data_dir.absolute(),
              "Redis broker" if settings.redis_url else "embedded broker")
    return open_system(config)


def open_system(config: AppConfig) -> TaskSystem:
    """The task system of `config`, its data folder opened and tried with
    a write; StartupFailure when either fails."""
    folder = config.settings.data_dir
    try:
        store = TaskStore(folder)
    except StorageError as exc:
        raise StartupFailure(_data_folder_problem(folder, exc), HOST_ERROR) from None
    try:
        store.check()
    except StorageError as exc:
        store.close()
        raise StartupFailure(_data_folder_problem(folder, exc), HOST_ERROR) from None
    return TaskSystem(config, store=store)


def check_sandbox(system: TaskSystem) -> None:
    """Choose the sandbox now; StartupFailure when no tier runs code here."""
    try:
        system.check_sandbox()
    except SandboxUnavailable as exc:
        raise StartupFailure(str(exc), CONFIG_ERROR) from None


def _data_folder_problem(folder: Path, exc: StorageError) -> str:
    cause = exc.__cause__
    # mkdir says EEXIST for a file in the folder's place, ENOTDIR for one in its path.
    if isinstance(cause, OSError) and cause.errno in (errno.EEXIST, errno.ENOTDIR):
        return (f"the data folder {folder} cannot be made: a file stands in its place or in its path; "
                "point --data-dir or AIPYTHON_DATA_DIR at a folder")
    return f"the data folder {folder} cannot be used: {exc}"


def system_from_config() -> TaskSystem:
    """The task system of a process configured by its environment alone
    (worker, clock, the WSGI entry point); SystemExit with the failure's
    status (its line printed) when it cannot start."""
    try:
        return open_process()
    except StartupFailure as failure:
        raise SystemExit(report(failure)) from None


def idle_without_redis(system: TaskSystem, process: str, stop: threading.Event) -> bool:
    """With no REDIS_URL the web process runs every task and the schedule
    itself, and this process (`process`: "worker", "clock") has no queue
    shared with it: say so in one line and wait for the stop, rather than
    run a queue nobody sends to (and, for a worker, hold warm kernels and
    their uids). It does not exit: honcho and foreman stop every process of
    the Procfile when one exits. True when it idled (and was stopped)."""
    if not system.embedded:
        return False
    log.warning("No REDIS_URL: this %s process has nothing to do, because without Redis the web process "
                "runs the tasks and the cleanup itself. It waits idle until stopped; set REDIS_URL "
                "(the same for every process) to run tasks here.", process)
    stop.wait()
    system.stop()
    return True
