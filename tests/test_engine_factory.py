"""The engine factory of a process that runs tasks: its default provider is
made ahead of the first task, and one that cannot be made waits for it."""

from __future__ import annotations

from actors.engines import EngineFactory

from .live_server import app_config


def test_the_default_provider_and_its_client_are_made_ahead_of_the_first_task(tmp_path, fake_llm):
    factory = EngineFactory(app_config(tmp_path, fake_llm))
    factory.prepare_default_provider().join(timeout=60)
    provider = factory.provider(None)
    assert provider._client is not None  # the SDK imported and its client made: the first task pays neither
    assert factory.provider(None) is provider


def test_a_default_provider_without_a_key_is_left_for_the_task_to_report(tmp_path, fake_llm):
    config = app_config(tmp_path, fake_llm)
    fake = config.llm.providers["fake"]
    config.llm.providers["fake"] = fake.model_copy(update={"api_key": None, "api_key_env": "AIPY_TEST_NO_SUCH_KEY"})
    factory = EngineFactory(config)
    thread = factory.prepare_default_provider()
    thread.join(timeout=60)
    assert not thread.is_alive() and factory.provider(None)._client is None
