"""Which source gave a value that failed validation: an environment variable
or a config file, so the error names the one the operator must fix.

The environment beats the files (see settings.py), so a field whose variable
is set took its value from there; pydantic-settings matches the names
without regard to case, and so does this. A nested field is set by its
whole path (AIPYTHON_ENGINE__MAX_ROUNDS) or by the block's JSON
(AIPYTHON_ENGINE); the default LLM provider's fields by AIPYTHON_LLM_* (see
llm.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

SETTINGS_PREFIX = "AIPYTHON_"
NESTED = "__"

#: The default provider's fields that AIPYTHON_LLM_* variables set.
LLM_VARIABLES = {
    "type": "AIPYTHON_LLM_TYPE",
    "model": "AIPYTHON_LLM_MODEL",
    "base_url": "AIPYTHON_LLM_BASE_URL",
    "protocol": "AIPYTHON_LLM_PROTOCOL",
    "api_key": "AIPYTHON_LLM_API_KEY",
}

#: How pydantic-settings names the field whose environment value is not
#: valid JSON (a list or a block set as a whole).
_UNPARSABLE = re.compile(r'error parsing value for field "(?P<field>[^"]+)" from source "EnvSettingsSource"')


def _set_variable(names: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The first of `names` set in `env` (any case), as it is spelled there."""
    spelled = {key.upper(): key for key in env}
    return next((spelled[name.upper()] for name in names if name.upper() in spelled), None)


def settings_variable(loc: Sequence[object], env: Mapping[str, str],
                      aliases: Mapping[str, Sequence[str]]) -> str | None:
    """The environment variable that set the settings field at `loc`, or
    None when the value came from the file. `aliases` maps a field to the
    names it is read under instead of AIPYTHON_<FIELD> (redis_url: REDIS_URL)."""
    path = [part for part in loc if isinstance(part, str)]
    if not path:
        return None
    if path[0] in aliases:
        return _set_variable(aliases[path[0]], env)
    # The deepest name first: AIPYTHON_ENGINE__MAX_ROUNDS before AIPYTHON_ENGINE.
    names = [SETTINGS_PREFIX + NESTED.join(path[:depth]) for depth in range(len(path), 0, -1)]
    return _set_variable(names, env)


def llm_variable(loc: Sequence[object], default: str | None, env: Mapping[str, str]) -> str | None:
    """The AIPYTHON_LLM* variable that set the llm.json field at `loc`, or
    None when the value came from the file."""
    if list(loc) == ["default"]:
        return _set_variable(["AIPYTHON_LLM"], env)
    if len(loc) >= 3 and loc[0] == "providers" and loc[1] == default and loc[2] in LLM_VARIABLES:
        return _set_variable([LLM_VARIABLES[str(loc[2])]], env)
    return None


def explain(exc: ValidationError, path: Path, variable_for) -> str:
    """One line for every problem in `exc`: those an environment variable
    caused name it, the others name the file `path` and the field.
    `variable_for(loc)` is settings_variable or llm_variable, bound."""
    from_env, from_file = [], []
    for error in exc.errors():
        value = error.get("input")
        shown = "" if isinstance(value, (dict, list)) else f" (got {value!r})"
        variable = variable_for(error["loc"])
        if variable:
            from_env.append(f"environment variable {variable}: {error['msg']}{shown}; fix it or unset it")
        else:
            field = ".".join(str(part) for part in error["loc"]) or "(top level)"
            from_file.append(f"field '{field}': {error['msg']}{shown}")
    problems = from_env
    if from_file:
        problems.append(f"{path}: invalid configuration: " + "; ".join(from_file) + ". Fix the file")
    return "; ".join(problems)


def explain_unparsable(message: str, env: Mapping[str, str], aliases: Mapping[str, Sequence[str]]) -> str:
    """pydantic-settings' "error parsing value" (a variable's value that is
    not the JSON its field needs), naming the variable."""
    match = _UNPARSABLE.search(message)
    variable = match and settings_variable(match["field"].split(NESTED), env, aliases)
    if not variable:
        return f"{message}; fix the AIPYTHON_* environment variable"
    return f"environment variable {variable}: not valid JSON for the setting {match['field']!r}; fix it or unset it"
