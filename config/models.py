"""The engine's settings and the LLM provider models.

Plain pydantic models with defaults: the loader fills them from the config
files and the environment, and tests build them directly. The engine takes
these objects and never reads files or the environment itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

#: Variables the sandboxed code may inherit from the server's environment.
#: Everything else (LLM keys, API tokens, REDIS_URL...) is withheld.
DEFAULT_ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


class EngineSettings(BaseModel):
    """Limits and policies for one engine run.

    Defaults: 16 rounds and 1800 s per task; each code block gets 120 s, 2048 MiB of address
    space, 1024 MiB per written file, 512 processes for the user, and 64 KiB
    of captured stdout and of stderr; an LLM call times out after 120 s and
    transient failures are retried 3 times, backing off from 1 s.
    """

    model_config = ConfigDict(extra="forbid")

    max_rounds: int = Field(16, ge=1, le=1000)
    task_timeout_s: float = Field(1800.0, gt=0, le=7 * 86400)
    exec_timeout_s: float = Field(120.0, gt=0, le=86400)
    memory_mb: int = Field(2048, ge=64)
    max_file_mb: int = Field(1024, ge=1)
    max_processes: int = Field(512, ge=1)
    output_cap_bytes: int = Field(65536, ge=1024)
    env_allow: list[str] = Field(default_factory=lambda: list(DEFAULT_ENV_ALLOW))
    llm_timeout_s: float = Field(120.0, gt=0)
    llm_retries: int = Field(3, ge=0, le=20)
    llm_backoff_s: float = Field(1.0, ge=0)
    cancel_poll_s: float = Field(0.1, gt=0, le=0.2)
    #: How much of the conversation a follow-up task (previous_task_id)
    #: carries over, in characters: past it the oldest results are cut first.
    followup_context_chars: int = Field(100_000, ge=1000)
    lang: Literal["en", "zh"] = "en"
    #: Which sandbox runs the blocks (see agent/sandbox): "auto" picks the
    #: strongest tier that passes a start-up self-test running a real block;
    #: "bubblewrap" and "process" force one, and fail the start if it cannot run.
    sandbox: Literal["auto", "bubblewrap", "process"] = "auto"
    #: Extra host folders masked inside the bubblewrap tier (the service adds
    #: its data and config folders, /root, /home and /tmp itself).
    sandbox_hide: list[str] = Field(default_factory=list)
    #: When the service runs as root, each task's blocks run as one uid leased
    #: from this range (first uid, how many), never as root. No user or subuid
    #: range on the host may use these ids.
    sandbox_uid_first: int = Field(1_200_000, ge=1000, le=4_000_000_000)
    sandbox_uid_count: int = Field(1000, ge=1, le=1_000_000)
    #: "full": blocks reach the network like any program on the host (the API
    #: refuses their connections when the service runs as root). "none": no
    #: socket reaches anything, loopback included (needs the bubblewrap tier).
    network: Literal["full", "none"] = "full"
    #: The interpreter that runs Python blocks (default: the server's own).
    python: str | None = None
    #: Per-task bounds beyond the per-block ones above: open files per
    #: process, and the total size of the workspace (checked while code runs).
    max_open_files: int = Field(1024, ge=16, le=1_048_576)
    max_workspace_mb: int = Field(2048, ge=1)
    #: "kernel": a task's Python blocks share one interpreter, as a
    #: notebook's cells do (variables, imports and open files carry over);
    #: "fresh": each Python block gets a new interpreter.
    python_state: Literal["kernel", "fresh"] = "kernel"
    #: With python_state "kernel": how many kernels each worker process keeps
    #: started and sandboxed ahead of its tasks, so that a task's first Python
    #: block does not wait for one (each holds a uid and about 10 MB until a
    #: task takes it); 0 starts every kernel with its task's first block.
    warm_kernels: int = Field(2, ge=0, le=64)

    def sandbox_uids(self) -> range:
        """The uids a root service leases to tasks, one per running task."""
        return range(self.sandbox_uid_first, self.sandbox_uid_first + self.sandbox_uid_count)



class ProviderSettings(BaseModel):
    """One named LLM provider from `llm.json`.

    `type` picks the official SDK (`openai` covers every OpenAI-compatible
    endpoint: OpenAI, DeepSeek, Ollama, vLLM, OpenRouter). `protocol` picks
    how the model asks for code to run: native tool calling (`tools`, the
    default) or fenced markdown blocks (`markdown`) for models without tools.
    `api_key_env` names the environment variable that holds the key (null for
    endpoints that need none, such as a local Ollama); `api_key` is filled in
    by the loader and never written back to a file.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["openai", "anthropic"]
    model: str = Field(min_length=1)
    base_url: str | None = None
    api_key_env: str | None = None
    api_key: SecretStr | None = None
    max_tokens: int = Field(4096, ge=1)
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    temperature: float | None = Field(None, ge=0, le=2)
    protocol: Literal["tools", "markdown"] = "tools"
    #: Filled in by the loader so error messages can say what to fix where.
    name: str = "default"
    source: str = "config/llm.json"


class LLMSettings(BaseModel):
    """All configured providers and the name of the default one."""

    model_config = ConfigDict(extra="forbid")

    default: str
    providers: dict[str, ProviderSettings]

    def provider(self, name: str | None = None) -> ProviderSettings:
        """The provider called `name` (default: the configured default).

        Raises KeyError with the known names when there is no such provider.
        """
        key = name or self.default
        try:
            return self.providers[key]
        except KeyError:
            known = ", ".join(sorted(self.providers)) or "none"
            raise KeyError(f"unknown LLM provider {key!r}; configured: {known}") from None
