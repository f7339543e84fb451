"""Reading requests: the JSON body, checked for type and size, and query
parameters with clear 400s, so resources stay thin."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TypeVar

import falcon
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def json_body(req: falcon.Request, model: type[M], max_bytes: int) -> M:
    """The request body validated as `model`: 415 for a body that is not
    JSON, 413 past `max_bytes`, 400 naming every field that is wrong."""
    content_type = (req.content_type or "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise falcon.HTTPUnsupportedMediaType(
            description=f"send a JSON body with the header Content-Type: application/json (got {content_type or 'none'!r})"
        )
    length = req.content_length
    if length is not None and length > max_bytes:
        raise falcon.HTTPContentTooLarge(description=f"request body is {length} bytes; the limit is {max_bytes} (max_body_bytes)")
    raw = req.bounded_stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise falcon.HTTPContentTooLarge(description=f"request body exceeds the limit of {max_bytes} bytes (max_body_bytes)")
    return validated(parse_json(raw), model, "request body")


def validated(data: object, model: type[M], what: str, *, strict: bool = False) -> M:
    """`data` (parsed JSON) as `model`: 400 for anything but an object
    (`what` names it in the detail), or naming every field that is wrong.
    `strict` (default False) takes no value of another type (`true` as a
    number, say)."""
    if not isinstance(data, dict):
        raise falcon.HTTPBadRequest(description=f"{what} must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        raise falcon.HTTPBadRequest(description=describe_validation(exc)) from None


def parse_json(raw: bytes, what: str = "request body"):
    """Strict JSON: NaN and Infinity are refused (they are not JSON and would
    be stored as such), so is a number too large for a float (``1e999``
    would become Infinity just the same), and so are lone surrogates (they
    cannot be written back out as UTF-8), huge integers and absurd nesting.
    `what` names the text in a 400's detail."""
    try:
        data = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise falcon.HTTPBadRequest(description=f"{what} holds invalid Unicode (a lone surrogate)") from None
    except RecursionError:
        raise falcon.HTTPBadRequest(description=f"{what} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, undecodable bytes, too many digits
        raise falcon.HTTPBadRequest(description=f"{what} is not valid JSON: {exc}") from None
    return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large for a number")
    return value


def describe_validation(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "body"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{field}: {message}")
    return "invalid request: " + "; ".join(problems)


def int_param(req: falcon.Request, name: str, default: int, *, low: int, high: int) -> int:
    return _number_param(req, name, default, int, "an integer", low, high)


def float_param(req: falcon.Request, name: str, default: float, *, low: float, high: float) -> float:
    return _number_param(req, name, default, float, "a number", low, high)


def _number_param(req: falcon.Request, name: str, default, kind: type, noun: str, low, high):
    """A numeric query parameter within [low, high] (nan is refused too)."""
    raw = req.get_param(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise falcon.HTTPBadRequest(description=f"query parameter {name} must be {noun}, got {raw!r}") from None
    if not (low <= value <= high) or (kind is float and not math.isfinite(value)):
        raise falcon.HTTPBadRequest(description=f"query parameter {name} must be between {low:g} and {high:g}, got {raw}")
    return value


@dataclass(frozen=True)
class RequestLimits:
    """The settings that bound what a request may ask (see config/models.py)."""

    max_body_bytes: int
    max_wait_s: float
    list_default_limit: int
    list_max_limit: int
    max_listed_files: int
    max_age_hours: float  # the cleanup's default age
    max_upload_bytes: int = 50 * 1024 * 1024  # files handed in with one task, in all
    max_upload_files: int = 100

    @classmethod
    def from_settings(cls, settings) -> "RequestLimits":
        return cls(settings.max_body_bytes, settings.max_wait_s, settings.list_default_limit,
                   settings.list_max_limit, settings.max_listed_files, settings.max_age_hours,
                   settings.max_upload_bytes, settings.max_upload_files)


def wait_param(req: falcon.Request, max_wait_s: float) -> float:
    """`?wait=SECONDS`, capped at `max_wait_s`; 0 when absent."""
    return min(float_param(req, "wait", 0.0, low=0, high=math.inf), max_wait_s)


#: The longest Idempotency-Key accepted.
MAX_KEY_LENGTH = 255


def idempotency_key(req: falcon.Request) -> str | None:
    """The `Idempotency-Key` header: 1 to 255 printable ASCII characters, or None."""
    key = req.get_header("Idempotency-Key")
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise falcon.HTTPBadRequest(
            description=f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return key
