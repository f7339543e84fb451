"""LLM providers: `llm.json` plus `AIPYTHON_LLM_*` environment overrides.

The overrides apply to the default provider, so a deploy can point the whole
service at another model without a file:

- AIPYTHON_LLM            the name of the default provider
- AIPYTHON_LLM_TYPE       openai | anthropic (creates the provider if new)
- AIPYTHON_LLM_MODEL      the model name
- AIPYTHON_LLM_BASE_URL   the endpoint (any OpenAI-compatible URL)
- AIPYTHON_LLM_API_KEY    the key itself (else the env var named by api_key_env)
- AIPYTHON_LLM_PROTOCOL   tools | markdown
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .models import LLMSettings

_OVERRIDES = {
    "AIPYTHON_LLM_TYPE": "type",
    "AIPYTHON_LLM_MODEL": "model",
    "AIPYTHON_LLM_BASE_URL": "base_url",
    "AIPYTHON_LLM_PROTOCOL": "protocol",
}


def llm_settings(data: Mapping[str, Any], env: Mapping[str, str], source: str) -> LLMSettings:
    """Validate `llm.json` data with the environment's overrides applied and
    each provider's key resolved. Raises pydantic's ValidationError."""
    data = dict(data)
    providers = {name: dict(p) if isinstance(p, Mapping) else p for name, p in dict(data.get("providers") or {}).items()}
    default = env.get("AIPYTHON_LLM") or data.get("default")
    overrides = {field: env[var] for var, field in _OVERRIDES.items() if env.get(var)}
    if default and (overrides or env.get("AIPYTHON_LLM_API_KEY")):
        target = providers.setdefault(default, {})
        if isinstance(target, dict):
            target.update(overrides)
            if env.get("AIPYTHON_LLM_API_KEY"):
                target["api_key"] = env["AIPYTHON_LLM_API_KEY"]
    for name, provider in providers.items():
        if isinstance(provider, dict):
            provider["name"] = name
            provider["source"] = source
            key_env = provider.get("api_key_env")
            if not provider.get("api_key") and isinstance(key_env, str) and env.get(key_env):
                provider["api_key"] = env[key_env]
    settings = LLMSettings.model_validate({"default": default, "providers": providers})
    settings.provider()  # the default must name a configured provider
    return settings
