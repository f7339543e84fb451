"""The OpenAPI document groups its operations under declared tags, so /docs
shows them as tasks, events, files, admin and service; /metrics is
documented there with the auth it really needs."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate as validate_openapi

from app.openapi import build_openapi
from config.settings import Settings

TAGS = {"tasks", "events", "files", "admin", "service"}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


@pytest.mark.parametrize("secured", [False, True], ids=["open", "token"])
def test_every_operation_has_one_declared_tag(secured):
    document = build_openapi(Settings(), secured=secured)
    validate_openapi(document)
    declared = {tag["name"]: tag for tag in document["tags"]}
    assert set(declared) == TAGS
    assert all(tag["description"] for tag in declared.values())
    for name, operation in operations(document):
        assert len(operation.get("tags", [])) == 1 and operation["tags"][0] in TAGS, name


def test_operations_are_grouped_by_what_they_touch():
    document = build_openapi(Settings(), secured=False)
    tag_of = {name: operation["tags"][0] for name, operation in operations(document)}
    assert tag_of["POST /tasks"] == tag_of["DELETE /tasks/{task_id}"] == tag_of["GET /tasks/{task_id}/result"] == "tasks"
    assert tag_of["GET /tasks/{task_id}/events"] == "events"
    assert tag_of["GET /tasks/{task_id}/files/{path}"] == "files"
    assert tag_of["POST /admin/cleanup"] == "admin"
    assert {tag_of[name] for name in ("GET /", "GET /health", "GET /docs", "GET /openapi.json", "GET /metrics")} == {"service"}


def test_metrics_are_documented_behind_the_token_unless_public():
    protected = build_openapi(Settings(), secured=True)["paths"]["/metrics"]["get"]
    assert "401" in protected["responses"] and "security" not in protected
    assert set(protected["responses"]["200"]["content"]) == {"text/plain", "application/openmetrics-text"}

    public = build_openapi(Settings(public_metrics=True), secured=True)["paths"]["/metrics"]["get"]
    assert "401" not in public["responses"] and public["security"] == []
