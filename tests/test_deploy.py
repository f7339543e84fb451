"""What a platform reads to deploy this repository: app.json (Heroku's app
manifest), the Procfile, requirements.txt and .python-version. They are
checked against the code they describe, so a setting added later cannot be
missing from the deploy form, and a Procfile line cannot lose its `exec`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel

from config.models import EngineSettings
from config.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

#: Variables read outside the settings models (config/llm.py and config/__init__.py).
OTHER_VARIABLES = {"AIPYTHON_LLM", "AIPYTHON_LLM_TYPE", "AIPYTHON_LLM_MODEL", "AIPYTHON_LLM_BASE_URL",
                   "AIPYTHON_LLM_API_KEY", "AIPYTHON_LLM_PROTOCOL", "AIPYTHON_CONFIG_DIR"}

#: Settings a platform provides under its own names (REDIS_URL is the Redis add-on's).
PLATFORM_NAMED = {"redis_url"}


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def settings_variables(model: type[BaseModel], prefix: str) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        if name in PLATFORM_NAMED:
            continue
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= settings_variables(field.annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(prefix + name.upper())
    return names


def manifest() -> dict:
    return json.loads((ROOT / "app.json").read_text())


def test_app_json_describes_every_setting_and_nothing_else():
    wanted = settings_variables(Settings, "AIPYTHON_") | OTHER_VARIABLES
    assert "AIPYTHON_ENGINE__MAX_ROUNDS" in wanted  # nested settings are walked
    described = set(manifest()["env"])
    assert not wanted - described, f"settings missing from app.json: {sorted(wanted - described)}"
    assert not described - wanted, f"app.json names unknown variables: {sorted(described - wanted)}"
    for name, entry in manifest()["env"].items():
        assert entry.get("description", "").strip(), name


def test_app_json_generates_a_token_because_the_web_process_listens_on_every_interface():
    token = manifest()["env"]["AIPYTHON_API_TOKEN"]
    assert token["generator"] == "secret" and token["required"] is True


def test_app_json_formation_names_the_procfile_processes_and_the_python_buildpack():
    document = manifest()
    assert set(document["formation"]) == set(procfile()) == {"web", "worker", "clock"}
    assert document["formation"]["web"]["quantity"] == 1
    assert {"url": "heroku/python"} in document["buildpacks"]


def test_every_procfile_line_execs_its_program_so_signals_reach_it():
    for name, command in procfile().items():
        assert command.split()[0] == "exec", f"{name}: {command}"


def test_the_web_process_listens_on_every_interface_on_port():
    assert procfile()["web"].split() == ["exec", "python", "-m", "app.serve"]
    source = (ROOT / "app" / "serve.py").read_text()
    assert 'HOST = "0.0.0.0"' in source and 'os.environ.get("PORT")' in source


def test_requirements_install_this_repository_and_python_version_is_one_it_supports():
    requirements = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    assert requirements == ["."]
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", version), version
    floor = re.search(r'^requires-python = ">=3\.(\d+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert floor is not None and int(version.split(".")[1]) >= int(floor.group(1))
