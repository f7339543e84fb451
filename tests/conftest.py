"""Shared fixtures: a fake LLM per test, engines wired to it, event recorders."""

from __future__ import annotations

import threading
import time

import pytest

from agent import Engine, EngineSettings, ProviderSettings, make_provider

from .fake_llm import FakeLLM

#: Every (provider type, protocol) pair the engine supports.
COMBOS = [("openai", "tools"), ("openai", "markdown"), ("anthropic", "tools"), ("anthropic", "markdown")]
COMBO_IDS = [f"{kind}-{protocol}" for kind, protocol in COMBOS]


@pytest.fixture
def fake_llm():
    with FakeLLM() as llm:
        yield llm


def provider_settings(llm: FakeLLM, kind: str, protocol: str = "tools", **changes) -> ProviderSettings:
    base_url = llm.openai_base_url if kind == "openai" else llm.anthropic_base_url
    values = dict(
        type=kind, model=f"fake-{kind}", base_url=base_url, api_key="test-key",
        api_key_env="FAKE_LLM_KEY", protocol=protocol, name=f"fake-{kind}",
    )
    values.update(changes)
    return ProviderSettings(**values)


def fast_settings(**changes) -> EngineSettings:
    """Engine settings tuned for tests: quick retries, short timeouts."""
    values = dict(llm_backoff_s=0.01, llm_timeout_s=10, exec_timeout_s=20)
    values.update(changes)
    return EngineSettings(**values)


def make_engine(llm: FakeLLM, kind: str, protocol: str = "tools", *, role: str = "", provider: dict | None = None, **settings) -> Engine:
    ps = provider_settings(llm, kind, protocol, **(provider or {}))
    es = fast_settings(**settings)
    return Engine(make_provider(ps, es.llm_timeout_s), es, role=role)


class Recorder:
    """An event sink that keeps every event with the time it arrived."""

    def __init__(self):
        self.events: list[tuple[str, dict, float]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, content: dict) -> None:
        with self.lock:
            self.events.append((kind, content, time.monotonic()))

    def types(self) -> list[str]:
        return [kind for kind, _, _ in self.events]

    def of(self, kind: str) -> list[dict]:
        return [content for k, content, _ in self.events if k == kind]

    def last(self, kind: str) -> dict:
        return self.of(kind)[-1]

    def seen(self, kind: str) -> bool:
        return any(k == kind for k, _, _ in self.events)


@pytest.fixture
def recorder():
    return Recorder()
