"""Configuration: the shipped defaults in this folder, a config directory that
may replace any of them, and the environment, which beats both.

The config directory is `--config-dir`, else `AIPYTHON_CONFIG_DIR`, else
`./config`; a file missing there falls back to the copy shipped beside this
module, so an installed service starts with no files of its own. A bad file
fails at start with a `ConfigError` naming the file, the field and the fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError
from pydantic_settings import SettingsError

from .models import LLMSettings

from .llm import llm_settings
from .settings import Settings
from .sources import explain, explain_unparsable, llm_variable, settings_variable

SHIPPED_DIR = Path(__file__).resolve().parent


class ConfigError(Exception):
    """A configuration problem, worded for the operator who must fix it."""


@dataclass
class AppConfig:
    config_dir: Path
    settings: Settings
    llm: LLMSettings
    role: str


def resolve_config_dir(config_dir: str | os.PathLike | None, env: Mapping[str, str]) -> Path:
    chosen = config_dir or env.get("AIPYTHON_CONFIG_DIR")
    if chosen:
        path = Path(chosen)
        if not path.is_dir():
            raise ConfigError(f"config directory {path} does not exist: create it or fix --config-dir / AIPYTHON_CONFIG_DIR")
        return path
    return Path("config") if Path("config").is_dir() else SHIPPED_DIR


def load_config(
    config_dir: str | os.PathLike | None = None,
    *,
    role: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AppConfig:
    """Read llm.json, settings.json and role.txt, apply the environment, then
    `overrides` (command-line options, which beat everything)."""
    env = os.environ
    folder = resolve_config_dir(config_dir, env)

    settings_path = _pick(folder, "settings.json")
    aliases = _env_aliases()
    try:
        settings = Settings(**_read_json(settings_path))
    except ValidationError as exc:
        raise ConfigError(explain(exc, settings_path, lambda loc: settings_variable(loc, env, aliases))) from None
    except (SettingsError, ValueError) as exc:  # an environment value that is not the JSON its field needs
        raise ConfigError(explain_unparsable(str(exc), env, aliases)) from None
    if overrides:
        settings = _override(settings, overrides)

    llm_path = _pick(folder, "llm.json")
    llm_data = _read_json(llm_path)
    default = env.get("AIPYTHON_LLM") or llm_data.get("default")
    try:
        llm = llm_settings(llm_data, env, str(llm_path))
    except ValidationError as exc:
        raise ConfigError(explain(exc, llm_path, lambda loc: llm_variable(loc, default, env))) from None
    except KeyError as exc:
        if llm_variable(["default"], default, env):
            raise ConfigError(f"environment variable AIPYTHON_LLM: {exc.args[0]}; fix it or unset it") from None
        raise ConfigError(f"{llm_path}: field 'default': {exc.args[0]}; name one of the providers or set AIPYTHON_LLM") from None

    return AppConfig(folder, settings, llm, read_role(role, _pick(folder, "role.txt")))


#: A `--role` value ending in one of these names a file, whatever else it holds.
ROLE_FILE_SUFFIXES = (".txt", ".md")


def read_role(role: str | None, default_path: Path) -> str:
    """`--role` is the role text, or a file holding it; without it, role.txt.

    A value that names an existing file is read. One that names none but
    looks like a file name (see `looks_like_path`) is a ConfigError, so a
    mistyped path is never taken for the role itself; any other value is the
    text."""
    if not role:
        return _read_text(default_path, "the role file")
    path = Path(role).expanduser()
    if path.is_file():
        return _read_text(path, "--role")
    if looks_like_path(role):
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"--role {role}: the file {what}; name an existing file, or give the role text itself")
    return role


def looks_like_path(value: str) -> bool:
    """A single line that ends in .txt or .md, or holds a path separator and
    no white space ("roles/analyst", "./role"): role text is a sentence."""
    if "\n" in value:
        return False
    if value.lower().endswith(ROLE_FILE_SUFFIXES):
        return True
    return "/" in value and not any(char.isspace() for char in value)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{what} {path}: cannot be read ({reason})") from None


def _pick(folder: Path, name: str) -> Path:
    own = folder / name
    return own if own.is_file() else SHIPPED_DIR / name


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); fix its permissions or remove it") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a JSON object, found {type(data).__name__}")
    return data


def _override(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """Apply command-line values, validated against each field's own rules
    (the environment beats the file inside Settings, so these come last)."""
    update = {}
    for key, value in overrides.items():
        field = Settings.model_fields[key]
        try:
            annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
            update[key] = TypeAdapter(annotation).validate_python(value)
        except ValidationError as exc:
            raise ConfigError(f"option {key.replace('_', '-')}: {exc.errors()[0]['msg']} (got {value!r})") from None
    return settings.model_copy(update=update)


def _env_aliases() -> dict[str, list[str]]:
    """The settings read from the environment under names of their own
    (redis_url: REDIS_URL), by field name and by each of those names."""
    aliases: dict[str, list[str]] = {}
    for name, field in Settings.model_fields.items():
        choices = getattr(field.validation_alias, "choices", None)
        if choices:
            names = [choice for choice in choices if isinstance(choice, str)]
            for key in (name, *names):
                aliases[key] = names
    return aliases
