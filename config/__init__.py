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
    try:
        settings = Settings(**_read_json(settings_path))
    except ValidationError as exc:
        raise ConfigError(_explain(exc, settings_path, "AIPYTHON_")) from None
    except (SettingsError, ValueError) as exc:  # an environment value that does not parse
        raise ConfigError(f"{exc}; fix the AIPYTHON_* environment variable or {settings_path}") from None
    if overrides:
        settings = _override(settings, overrides)

    llm_path = _pick(folder, "llm.json")
    try:
        llm = llm_settings(_read_json(llm_path), env, str(llm_path))
    except ValidationError as exc:
        raise ConfigError(_explain(exc, llm_path, "AIPYTHON_LLM_")) from None
    except KeyError as exc:
        raise ConfigError(f"{llm_path}: field 'default': {exc.args[0]}; name one of the providers or set AIPYTHON_LLM") from None

    return AppConfig(folder, settings, llm, read_role(role, _pick(folder, "role.txt")))


def read_role(role: str | None, default_path: Path) -> str:
    """`--role` is a file to read when such a file exists, else the role text
    itself; without it, role.txt."""
    if role:
        path = Path(role)
        return path.read_text(encoding="utf-8") if path.is_file() else role
    return default_path.read_text(encoding="utf-8")


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


def _explain(exc: ValidationError, path: Path, env_prefix: str) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        value = error.get("input")
        shown = "" if isinstance(value, (dict, list)) else f" (got {value!r})"
        problems.append(f"field '{field}': {error['msg']}{shown}")
    return (
        f"{path}: invalid configuration: " + "; ".join(problems)
        + f". Fix the file, or the matching {env_prefix}* environment variable."
    )
