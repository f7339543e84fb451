"""The service's settings: `settings.json` overridden by the environment.

Every field can be set in `settings.json` or as `AIPYTHON_<FIELD>` (nested
engine fields as `AIPYTHON_ENGINE__<FIELD>`, e.g. AIPYTHON_ENGINE__MAX_ROUNDS);
the platform conventions `REDIS_URL` and `PORT` are read as they are.
Environment beats file, so a Procfile deploy needs no file edits.
"""

from __future__ import annotations

import json

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .models import EngineSettings


class Settings(BaseSettings):
    """Service settings with their defaults (see README, Configuration)."""

    model_config = SettingsConfigDict(
        env_prefix="AIPYTHON_", env_nested_delimiter="__", extra="forbid", populate_by_name=True
    )

    data_dir: Path = Path("data")
    #: Tasks run at once per process. A task spends most of its time waiting
    #: for the LLM, so this is above the core count; each running task holds
    #: a kernel (about 10 MB) and a uid, and each idle worker thread wakes
    #: once per queue_idle_wake_ms.
    workers: int = Field(8, ge=1, le=256)
    max_age_hours: float = Field(24.0, ge=0)
    cleanup_interval_minutes: float = Field(60.0, gt=0)
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "AIPYTHON_REDIS_URL", "redis_url"))
    debug: bool = False
    # debug shows our own loggers' (aipy.*) debug lines only; this adds the
    # libraries' (Dramatiq, redis, httpx, the LLM SDKs...), which flood the
    # log with their internals (`--debug-all`; see actors/logs.py).
    debug_libraries: bool = False
    http_threads: int = Field(8, ge=1, le=512)
    # Open connections waitress keeps at once; past it, it stops accepting, so
    # its own default (100) let a handful of idle clients take the API down.
    http_connection_limit: int = Field(1000, ge=1, le=1_000_000)
    # An idle keep-alive connection is closed after this many seconds (waitress
    # counts whole seconds); a request in progress is never cut.
    http_channel_timeout_s: int = Field(60, ge=1, le=86_400)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # Files handed in with a task: their total size and their number. A
    # multipart/form-data submit may be up to max_upload_bytes plus
    # max_body_bytes (its task part and the form's framing fit in the
    # latter); a JSON submit's base64 `files` count against max_body_bytes,
    # like the rest of a JSON body (see app/uploads.py).
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=0)
    max_upload_files: int = Field(100, ge=0, le=100_000)
    max_instruction_chars: int = Field(100_000, ge=1)
    list_default_limit: int = Field(100, ge=1)
    list_max_limit: int = Field(1000, ge=1)
    cancel_wait_s: float = Field(2.0, ge=0, le=60)
    # An idle worker thread or queue consumer sleeps until a message is sent
    # and otherwise looks every queue_idle_wake_ms: for a stop (a worker takes
    # up to twice this to stop) and, over Redis, for a message whose wake-up
    # notice was lost. At most 2 s, or a dead Redis worker's tasks could miss
    # the 60 s promise (actors/broker.py). queue_poll_ms: how often a consumer
    # holding a delayed message (a callback's retry) looks, so the most it
    # starts late. See actors/wakeups.py.
    queue_idle_wake_ms: int = Field(1000, ge=10, le=2000)
    queue_poll_ms: int = Field(20, ge=1, le=5000)
    # Callers waiting on a task (SSE streams, ?wait=) each hold a server
    # thread; they get their own budget so they never starve the API.
    max_streams: int = Field(64, ge=1, le=4096)
    max_wait_s: float = Field(120.0, ge=0, le=3600)
    stream_keepalive_s: float = Field(15.0, gt=0, le=300)
    max_listed_files: int = Field(10_000, ge=1)
    api_token: SecretStr | None = None
    public_docs: bool = True
    # GET /metrics needs the api_token like the API, unless this is on (a
    # scraper that cannot send a token, on a network that is trusted).
    public_metrics: bool = False
    # Each process publishes its metrics to <data_dir>/.metrics/ at most every
    # metrics_publish_interval_s when they changed, so one scrape of the web
    # process shows every worker's; a file not refreshed for
    # metrics_retire_after_s is a dead process's, whose counts are then
    # folded into the retired totals (see actors/metrics_files.py).
    metrics_publish_interval_s: float = Field(5.0, gt=0, le=3600)
    metrics_retire_after_s: float = Field(300.0, ge=10, le=7 * 86_400)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # With no api_token, only requests whose Host is a loopback name or one of
    # these are served: a DNS-rebinding page reaches a local server under its
    # own host name, which this refuses ("*" allows any; see app/origin.py).
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    callback_secret: SecretStr | None = None
    # Empty: callbacks reach public addresses only (no loopback, private or
    # metadata address: they are requests this server makes). Set: only the
    # hosts listed (names, *.domain, *, IPs, CIDRs such as 10.0.0.0/8), and a
    # listed name or network may be private; see actors/callback_targets.py.
    callback_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    callback_retries: int = Field(5, ge=0, le=50)
    callback_backoff_s: float = Field(2.0, ge=0)
    callback_timeout_s: float = Field(10.0, gt=0, le=300)
    # A task's end that storage refuses (a full disk, a read-only data folder)
    # is tried again: by its worker for end_retry_inline_s, then by one
    # background thread, first after end_retry_backoff_s, doubling up to
    # end_retry_max_backoff_s (the most a task waits once space is back),
    # for at most end_retry_max_tasks tasks at once; past that, a worker
    # keeps trying its own (see actors/runner.py).
    end_retry_inline_s: float = Field(2.0, ge=0, le=60)
    end_retry_backoff_s: float = Field(0.2, gt=0, le=60)
    end_retry_max_backoff_s: float = Field(5.0, gt=0, le=600)
    end_retry_max_tasks: int = Field(1000, ge=1, le=1_000_000)
    # A task pending this long (since it was created or last re-sent) with no
    # message for it in the queue lost its message (Redis came back empty)
    # and is sent again; the reconciler looks every reconcile_interval_s.
    # Keep the first well above the time a submit's send may take (Redis
    # timeouts: 7 s at most), or a task still on its way is sent twice:
    # harmless, a task runs once, but noisy. See actors/reconciler.py.
    requeue_pending_after_s: float = Field(60.0, gt=0, le=86_400)
    reconcile_interval_s: float = Field(15.0, gt=0, le=3600)
    # A process that runs no tasks itself (the web process over Redis,
    # --no-worker) warns, once per task, of a task pending this long while no
    # worker process listens on the queue: nothing will ever run it. See
    # actors/no_worker_watch.py.
    no_worker_warn_s: float = Field(60.0, gt=0, le=86_400)
    lang: str = "en"
    engine: EngineSettings = Field(default_factory=EngineSettings)

    @field_validator("lang")
    @classmethod
    def _known_lang(cls, value: str) -> str:
        # Accept locale spellings such as zh_CN.UTF-8; anything else is English.
        return "zh" if value.lower().startswith("zh") else "en"

    @field_validator("cors_origins", "callback_allowed_hosts", "allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value):
        # AIPYTHON_CORS_ORIGINS=https://a.example,https://b.example reads as a
        # list; a JSON array works too.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        # The file's values arrive as init kwargs; the environment wins over them.
        return (env_settings, init_settings)

    @property
    def max_request_bytes(self) -> int:
        """The largest request body the HTTP server reads: a multipart
        submit's files (max_upload_bytes) plus max_body_bytes for the rest."""
        return self.max_body_bytes + self.max_upload_bytes

    def engine_settings(self) -> EngineSettings:
        """The engine's settings with the service-wide language applied."""
        return self.engine.model_copy(update={"lang": self.lang})
