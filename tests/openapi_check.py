"""Check HTTP responses against the server's own OpenAPI document.

Installed for every test (see conftest): each JSON response that a live test
server sends through `requests` is matched to its path, method and status in
/openapi.json and validated against the schema found there. A response the
document does not describe fails the test too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import jsonschema
import requests

_documents: dict[str, dict] = {}
_patterns: dict[str, list[tuple[re.Pattern, str]]] = {}


def register(base_url: str) -> None:
    """Validate responses of the server at `base_url` from now on."""
    document = requests.get(f"{base_url}/openapi.json", timeout=10, headers=_auth_header(base_url)).json()
    _documents[base_url] = document
    _patterns[base_url] = [(_pattern(path), path) for path in sorted(document["paths"], key=lambda p: -len(p))]


def _pattern(template: str) -> re.Pattern:
    """A regex for a path template: {path} spans slashes, other names do not."""
    regex = re.escape(template).replace(r"\{path\}", ".+")
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", regex) + "$")


_tokens: dict[str, str] = {}


def _auth_header(base_url: str) -> dict:
    token = _tokens.get(base_url)
    return {"Authorization": f"Bearer {token}"} if token else {}


def set_token(base_url: str, token: str | None) -> None:
    if token:
        _tokens[base_url] = token


def unregister(base_url: str) -> None:
    _documents.pop(base_url, None)
    _patterns.pop(base_url, None)
    _tokens.pop(base_url, None)


def check(response: requests.Response) -> None:
    parts = urlsplit(response.url)
    base = f"{parts.scheme}://{parts.netloc}"
    document = _documents.get(base)
    if document is None or response.request.method == "OPTIONS" or parts.path.startswith("/docs/"):
        return  # CORS preflights and the docs page's own assets are not API operations
    template = next((t for pattern, t in _patterns[base] if pattern.match(parts.path.rstrip("/") or "/")), None)
    method = response.request.method.lower()
    where = f"{response.request.method} {parts.path} -> {response.status_code}"
    if template is None:
        assert response.status_code == 404, f"{where}: path not in the OpenAPI document"
        return
    operation = document["paths"][template].get(method)
    if operation is None:
        assert response.status_code in (404, 405), f"{where}: method not in the OpenAPI document"
        return
    described = operation["responses"].get(str(response.status_code))
    assert described is not None, f"{where}: status not in the OpenAPI document"
    content = described.get("content", {})
    media = (response.headers.get("Content-Type") or "").split(";")[0]
    if "application/json" not in content or media != "application/json":
        return
    schema = {**content["application/json"]["schema"], "components": document["components"]}
    try:
        jsonschema.Draft202012Validator(schema).validate(response.json())
    except jsonschema.ValidationError as exc:
        raise AssertionError(f"{where}: response does not match the OpenAPI document: {exc.message}") from None
