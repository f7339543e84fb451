"""What every LLM provider speaks: a neutral conversation in, one reply out.

The engine keeps the conversation in a provider-neutral form (`Turn`s) and
each provider translates it to its own wire format. A provider streams the
reply internally and checks `abort` between chunks, so a cancelled task stops
reading a long reply at once.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from contextlib import closing
from dataclasses import dataclass, field

from ..protocol import CodeRequest
from config.models import ProviderSettings


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: "Usage") -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens

    def to_dict(self) -> dict:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


@dataclass
class Reply:
    """One complete model reply: its prose and the code it asked to run
    through native tool calls (empty for the markdown protocol)."""

    text: str
    tool_calls: list[CodeRequest] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


@dataclass
class Turn:
    """One entry of the neutral conversation.

    role "user": `text`; role "assistant": `text` and its `tool_calls`;
    role "results": the outcome of each tool call, as (call id, text, failed).
    """

    role: str
    text: str = ""
    tool_calls: list[CodeRequest] = field(default_factory=list)
    results: list[tuple[str, str, bool]] = field(default_factory=list)


class LLMError(Exception):
    """A failed LLM call, with a message meant for the task's user.

    `retryable` marks transient failures (rate limits, 5xx, dropped
    connections) that are worth another try after a pause.
    """

    def __init__(self, message: str, *, retryable: bool = False, exception: str = ""):
        super().__init__(message)
        self.retryable = retryable
        self.exception = exception or message


class Aborted(Exception):
    """The caller asked to stop while the reply was being read."""


class Provider(ABC):
    """A configured LLM endpoint. Thread-safe: one instance serves many tasks."""

    def __init__(self, settings: ProviderSettings, timeout_s: float):
        self.settings = settings
        self.timeout_s = timeout_s
        self._client = None
        self._client_lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.settings.model

    @property
    def uses_tools(self) -> bool:
        return self.settings.protocol == "tools"

    def client(self):
        """The SDK client, made on first use (making one costs milliseconds
        that a task's first event should not wait for) and then shared."""
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client(self._api_key())
            return self._client

    def _api_key(self) -> str:
        s = self.settings
        if s.api_key is not None and s.api_key.get_secret_value():
            return s.api_key.get_secret_value()
        if s.api_key_env is None:
            # Keyless endpoints (a local Ollama, vLLM) still need a non-empty
            # string for the SDKs to build their auth header.
            return "not-needed"
        raise LLMError(
            f"LLM provider {s.name!r} has no API key: set the environment variable "
            f"{s.api_key_env} (named by providers.{s.name}.api_key_env in {s.source}), "
            f"or set AIPYTHON_LLM_API_KEY"
        )

    def auth_failed(self, status: int) -> LLMError:
        s = self.settings
        where = s.api_key_env or "AIPYTHON_LLM_API_KEY"
        return LLMError(
            f"LLM provider {s.name!r} rejected the API key (HTTP {status}): "
            f"put a valid key in {where} (see providers.{s.name} in {s.source})"
        )

    #: The SDK's exception classes: any API error, an HTTP status error, and
    #: a connection failure (set by each subclass).
    api_error: type[Exception] = Exception
    status_error: type[Exception] = Exception
    connection_error: type[Exception] = Exception

    @abstractmethod
    def _make_client(self, api_key: str): ...

    @abstractmethod
    def _open_stream(self, client, system: str, turns: list[Turn]):
        """Send the request with streaming on; return the SDK's stream."""

    @abstractmethod
    def _read_stream(self, stream, abort: threading.Event) -> Reply:
        """Read the stream to its end, raising Aborted when `abort` is set."""

    def complete(self, system: str, turns: list[Turn], abort: threading.Event) -> Reply:
        """Send the conversation, stream the reply, return it whole.

        Raises LLMError on failure and Aborted when `abort` is set mid-reply.
        """
        client = self.client()
        try:
            with closing(self._open_stream(client, system, turns)) as stream:
                return self._read_stream(stream, abort)
        except (Aborted, LLMError):
            raise
        except self.api_error as exc:
            raise self._translate(exc) from exc
        except Exception as exc:
            if abort.is_set():
                raise Aborted() from exc
            # Transport errors raised while iterating a stream are not wrapped
            # by the SDKs; a reply cut off mid-stream is worth another try.
            raise LLMError(
                f"LLM provider {self.settings.name!r}: the reply stream broke off: {exc}",
                retryable=True,
                exception=f"{type(exc).__name__}: {exc}",
            ) from exc

    def _translate(self, exc: Exception) -> LLMError:
        """Map an SDK exception to an LLMError: auth failures name what to
        fix; rate limits, server errors and dropped connections are
        retryable; any other HTTP error (a bad request, an unknown model) is
        final."""
        name = self.settings.name
        detail = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
        if isinstance(exc, self.status_error):
            status = getattr(exc, "status_code", 0)
            if status in (401, 403):
                error = self.auth_failed(status)
                error.exception = detail
                return error
            retryable = status == 408 or status == 429 or status >= 500
            return LLMError(f"LLM provider {name!r} answered HTTP {status}: {exc}", retryable=retryable, exception=detail)
        if isinstance(exc, self.connection_error):
            where = self.settings.base_url or "its default endpoint"
            return LLMError(f"LLM provider {name!r} could not be reached at {where}: {exc}", retryable=True, exception=detail)
        return LLMError(f"LLM provider {name!r} failed: {exc}", exception=detail)

