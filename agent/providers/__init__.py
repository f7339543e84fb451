"""LLM providers: one class per official SDK, chosen by a provider's `type`."""

from config.models import ProviderSettings
from .base import Aborted, LLMError, Provider, Reply, Turn, Usage


def make_provider(settings: ProviderSettings, timeout_s: float) -> Provider:
    """A provider for `settings`; its SDK client is made on first use."""
    if settings.type == "anthropic":
        from .anthropic_provider import AnthropicProvider

        return AnthropicProvider(settings, timeout_s)
    from .openai_provider import OpenAIProvider

    return OpenAIProvider(settings, timeout_s)


__all__ = ["Aborted", "LLMError", "Provider", "Reply", "Turn", "Usage", "make_provider"]
