"""Build an engine for a task from the configuration and the task's options.

Providers are cached by name: each holds an SDK client with a connection
pool, which many tasks then share instead of each paying for a new one.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from agent import Engine, ExecLimits, Executor, Provider, Sandbox, WarmKernels, make_provider, sandbox_for
from config import AppConfig
from config.models import EngineSettings

log = logging.getLogger("aipy.engines")


class EngineFactory:
    def __init__(self, config: AppConfig, workspaces_dir: Path | None = None):
        self.config = config
        #: Where task workspaces live: the sandbox's self-test runs there.
        self.workspaces_dir = workspaces_dir
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._warm: WarmKernels | None = None

    def provider(self, name: str | None) -> Provider:
        """The provider called `name` (None: the default). KeyError names
        the configured ones when there is no such provider."""
        settings = self.config.llm.provider(name)
        with self._lock:
            if settings.name not in self._providers:
                timeout = self.config.settings.engine.llm_timeout_s
                self._providers[settings.name] = make_provider(settings, timeout)
            return self._providers[settings.name]

    def prepare_default_provider(self) -> threading.Thread:
        """Import the default provider's SDK and make its client now, in a
        thread of its own, so the first task does not wait for it (importing
        the `openai` SDK takes about half a second, `anthropic`'s over one).
        Only processes that run tasks call this: the web process over Redis
        never loads an SDK. A provider that cannot be made yet (no API key)
        is left for the task, which reports why."""

        def prepare() -> None:
            try:
                self.provider(None).client()
            except Exception as exc:  # the first task meets it again, and says so
                log.debug("The default LLM provider is not ready ahead of the first task: %s", exc)

        thread = threading.Thread(target=prepare, name="prepare-llm-provider", daemon=True)
        thread.start()
        return thread

    def engine_settings(self) -> EngineSettings:
        """The service's engine settings, with the folders no code may see
        (the task state and the config, which may hold the API token)."""
        settings = self.config.settings.engine_settings()
        hidden = [str(self.config.settings.data_dir.absolute()), str(self.config.config_dir.absolute())]
        return settings.model_copy(update={"sandbox_hide": [*settings.sandbox_hide, *hidden]})

    def sandbox(self) -> Sandbox:
        """The sandbox tier in force, chosen (after a self-test) on first
        use. Raises SandboxUnavailable when no allowed tier works here."""
        return sandbox_for(ExecLimits.from_settings(self.engine_settings()), self.workspaces_dir)

    def build(self, options: dict) -> Engine:
        """An engine with the task's overrides: `llm`, `role`, `max_rounds`
        and `timeout_s` (the task's time limit)."""
        settings = self.engine_settings()
        update: dict = {}
        if options.get("max_rounds"):
            update["max_rounds"] = options["max_rounds"]
        if options.get("timeout_s"):
            update["task_timeout_s"] = options["timeout_s"]
        settings = settings.model_copy(update=update)
        role = options.get("role") or self.config.role
        executor = Executor(ExecLimits.from_settings(settings), self.sandbox(), warm=self._warm)
        return Engine(self.provider(options.get("llm")), settings, role=role, executor=executor)

    def start_warm_kernels(self) -> None:
        """Keep `engine.warm_kernels` kernels ready for this process's tasks
        (a worker's: they are tied to the process that starts them)."""
        settings = self.engine_settings()
        if self._warm is not None or not settings.warm_kernels or settings.python_state != "kernel" \
                or self.workspaces_dir is None:
            return
        executor = Executor(ExecLimits.from_settings(settings), self.sandbox())
        self._warm = WarmKernels(executor, self.workspaces_dir, settings.warm_kernels)

    def close(self, timeout_s: float = 2.0) -> None:
        """End the kernels kept ready that no task took."""
        warm, self._warm = self._warm, None
        if warm is not None:
            warm.close(timeout_s)
