"""Build an engine for a task from the configuration and the task's options.

Providers are cached by name: each holds an SDK client with a connection
pool, which many tasks then share instead of each paying for a new one.
"""

from __future__ import annotations

import threading

from agent import Engine, Provider, make_provider
from config import AppConfig


class EngineFactory:
    def __init__(self, config: AppConfig):
        self.config = config
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()

    def provider(self, name: str | None) -> Provider:
        """The provider called `name` (None: the default). KeyError names
        the configured ones when there is no such provider."""
        settings = self.config.llm.provider(name)
        with self._lock:
            if settings.name not in self._providers:
                timeout = self.config.settings.engine.llm_timeout_s
                self._providers[settings.name] = make_provider(settings, timeout)
            return self._providers[settings.name]

    def build(self, options: dict) -> Engine:
        """An engine with the task's overrides: `llm`, `role`, `max_rounds`
        and `timeout_s` (the task's time limit)."""
        settings = self.config.settings.engine_settings()
        # Code in a bubblewrap sandbox must not see the other tasks.
        update: dict = {"sandbox_hide": [*settings.sandbox_hide, str(self.config.settings.data_dir.absolute())]}
        if options.get("max_rounds"):
            update["max_rounds"] = options["max_rounds"]
        if options.get("timeout_s"):
            update["task_timeout_s"] = options["timeout_s"]
        settings = settings.model_copy(update=update)
        role = options.get("role") or self.config.role
        return Engine(self.provider(options.get("llm")), settings, role=role)
