"""Configuration: shipped defaults, a config directory, environment overrides
and errors that name the file, the field and the fix."""

import json

import pytest

from config import ConfigError, load_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("AIPYTHON_CONFIG_DIR", "AIPYTHON_LLM", "AIPYTHON_LLM_TYPE", "AIPYTHON_LLM_MODEL",
                 "AIPYTHON_LLM_BASE_URL", "AIPYTHON_LLM_API_KEY", "AIPYTHON_LLM_PROTOCOL", "AIPYTHON_LANG",
                 "AIPYTHON_WORKERS", "OPENAI_API_KEY", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no ./config here: the shipped defaults apply


def test_shipped_defaults_load_with_no_files():
    config = load_config()
    assert config.settings.workers == 8 and config.settings.max_age_hours == 24
    assert config.settings.engine.max_rounds == 16
    assert config.llm.default == "openai" and config.llm.provider().model
    assert "AIPython" in config.role


def test_environment_points_the_default_provider_elsewhere(monkeypatch):
    monkeypatch.setenv("AIPYTHON_LLM", "local")
    monkeypatch.setenv("AIPYTHON_LLM_TYPE", "openai")
    monkeypatch.setenv("AIPYTHON_LLM_MODEL", "llama3")
    monkeypatch.setenv("AIPYTHON_LLM_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("AIPYTHON_LLM_API_KEY", "k-123")
    monkeypatch.setenv("AIPYTHON_LLM_PROTOCOL", "markdown")
    provider = load_config().llm.provider()
    assert (provider.name, provider.type, provider.model, provider.base_url, provider.protocol) == (
        "local", "openai", "llama3", "http://127.0.0.1:11434/v1", "markdown")
    assert provider.api_key.get_secret_value() == "k-123"


def test_key_comes_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert load_config().llm.provider("openai").api_key.get_secret_value() == "sk-from-env"
    assert "sk-from-env" not in repr(load_config().llm)


def test_environment_beats_the_file_and_options_beat_both(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "settings.json").write_text(json.dumps({"workers": 2, "engine": {"max_rounds": 3}}))
    monkeypatch.setenv("AIPYTHON_WORKERS", "6")
    monkeypatch.setenv("AIPYTHON_ENGINE__EXEC_TIMEOUT_S", "7")
    monkeypatch.setenv("AIPYTHON_LANG", "zh_CN.UTF-8")
    settings = load_config(tmp_path / "cfg").settings
    assert settings.workers == 6 and settings.engine.max_rounds == 3 and settings.engine.exec_timeout_s == 7
    assert settings.engine_settings().lang == "zh"
    assert load_config(tmp_path / "cfg", overrides={"workers": 9}).settings.workers == 9


def test_a_missing_file_in_the_config_dir_falls_back_to_the_shipped_one(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "role.txt").write_text("You are terse.")
    config = load_config(tmp_path / "cfg")
    assert config.role == "You are terse." and config.llm.default == "openai"


def test_role_option_is_a_file_or_the_text_itself(tmp_path):
    (tmp_path / "role.md").write_text("Role from a file.")
    assert load_config(role=str(tmp_path / "role.md")).role == "Role from a file."
    assert load_config(role="Be brief.").role == "Be brief."


def test_bad_field_names_file_field_and_fix(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "settings.json").write_text(json.dumps({"engine": {"max_rounds": 0}}))
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "cfg")
    message = str(err.value)
    assert "settings.json" in message and "engine.max_rounds" in message and "greater than or equal to 1" in message


def test_broken_json_names_the_line(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "llm.json").write_text('{"default": "x",\n  oops}')
    with pytest.raises(ConfigError, match=r"llm.json: not valid JSON at line 2"):
        load_config(tmp_path / "cfg")


def test_unknown_provider_type_is_refused(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "llm.json").write_text(json.dumps({"default": "a", "providers": {"a": {"type": "gemini", "model": "m"}}}))
    with pytest.raises(ConfigError, match=r"providers\.a\.type"):
        load_config(tmp_path / "cfg")


def test_default_must_name_a_provider(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "llm.json").write_text(json.dumps({"default": "nope", "providers": {"a": {"type": "openai", "model": "m"}}}))
    with pytest.raises(ConfigError, match="unknown LLM provider 'nope'; configured: a"):
        load_config(tmp_path / "cfg")


def test_missing_config_dir_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent")


def test_role_option_that_looks_like_a_file_must_name_one(tmp_path):
    for missing in ("roles/analyst.txt", "analyst.md", "./role"):
        with pytest.raises(ConfigError, match=f"--role {missing}: the file does not exist"):
            load_config(role=missing)
    # Sentences are role text, slashes and all.
    assert load_config(role="You are a data/ML expert.").role == "You are a data/ML expert."


@pytest.mark.parametrize("variable, value, fragment", [
    ("AIPYTHON_WORKERS", "abc", "valid integer"),
    ("AIPYTHON_ENGINE__MAX_ROUNDS", "-1", "greater than or equal to 1"),
    ("aipython_engine__max_rounds", "0", "greater than or equal to 1"),
    ("AIPYTHON_ENGINE", '{"max_rounds": 0}', "greater than or equal to 1"),
    ("AIPYTHON_ENGINE", "{not json", "not valid JSON for the setting 'engine'"),
    ("AIPYTHON_LLM_PROTOCOL", "smoke-signals", "'tools' or 'markdown'"),
    ("AIPYTHON_LLM", "nope", "unknown LLM provider 'nope'"),
])
def test_a_bad_environment_value_names_the_variable_not_the_file(monkeypatch, variable, value, fragment):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        load_config()
    message = str(err.value)
    assert message.startswith(f"environment variable {variable}: ") and fragment in message
    assert "settings.json" not in message and "llm.json" not in message


def test_a_bad_file_value_beside_a_bad_variable_names_each(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "settings.json").write_text(json.dumps({"max_age_hours": -1}))
    monkeypatch.setenv("AIPYTHON_WORKERS", "0")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "cfg")
    message = str(err.value)
    assert "environment variable AIPYTHON_WORKERS: " in message
    assert "settings.json: invalid configuration: field 'max_age_hours'" in message
    assert "AIPYTHON_MAX_AGE_HOURS" not in message
