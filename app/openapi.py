"""The OpenAPI 3.1 document of the API, built from the pydantic models that
validate requests and shape responses, so it cannot drift from them.

OpenAPI 3.1 takes JSON Schema 2020-12 as it is, so each model's schema goes
into `components/schemas` unchanged; the paths below say which model each
endpoint takes and answers with, and which errors it can give.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from storage import STATUSES

from .models import (
    CancelResponse, ErrorResponse, FileList, MessageResponse, SubmitResponse, TaskList, TaskResult, TaskStatus,
    TaskSubmission,
)
from .uploads import BASE64_PATTERN, MAX_PATH_BYTES, PATH_PATTERN, TASK_PART
from .version import API_NAME, VERSION

MODELS: list[type[BaseModel]] = [
    TaskSubmission, SubmitResponse, TaskStatus, TaskResult, TaskList, CancelResponse, MessageResponse, FileList,
    ErrorResponse,
]

ERRORS = {
    "400": "Invalid request (the detail names each bad field) or a task that cannot be cancelled",
    "401": "Missing or wrong API token",
    "403": "Refused: a request a web page made (an Origin not in cors_origins on POST and DELETE; with no API "
           "token, a Host that is neither loopback nor in allowed_hosts), or a connection from sandboxed task code",
    "404": "No such task, file or route (a submit that waited: its task was removed by a cleanup meanwhile; "
           "a follow-up of a task that does not exist)",
    "405": "Method not allowed on this path",
    "409": "A follow-up (previous_task_id) of a task that has not finished",
    "413": "Request body over max_body_bytes; files over max_upload_bytes in all, or more than max_upload_files "
           "(the detail names the file)",
    "415": "Body not sent as application/json (a POST or DELETE may also have no body; POST /tasks also takes "
           "multipart/form-data)",
    "503": "Task queue or storage unavailable (or a damaged task file), or too many open streams",
    "507": "No space left on the device holding the data folder (ENOSPC, EDQUOT); nothing was stored",
    "500": "Internal error (details in the server log)",
}

#: The groups /docs shows the operations in; each operation has one.
TAGS = [
    {"name": "tasks", "description": "Submit tasks; read their status and result; list and cancel them"},
    {"name": "events", "description": "Follow a task's events live, as Server-Sent Events or NDJSON"},
    {"name": "files", "description": "The files a task's code left in its workspace"},
    {"name": "admin", "description": "Maintenance: remove old finished tasks now"},
    {"name": "service", "description": "The service itself: what it offers, its health, this documentation, "
                                       "its Prometheus metrics"},
]

#: One event of the SSE stream. OpenAPI before 3.2 (no `itemSchema`) reads
#: the schema of text/event-stream as that of each event, as tools do.
SSE_EVENT = {"type": "object", "required": ["id", "event", "data"], "properties": {
    "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event's seq"},
    "event": {"type": "string", "description": "The event's type (task_start, ..., task_end, callback)"},
    "data": {"type": "string", "contentMediaType": "application/json", "description": "The event's JSON line"},
}}

#: /health's answer (actors/health.py): the spec's fields, what is checked,
#: and where tasks run; the last two fields only over Redis.
HEALTH = {"type": "object", "required": ["status", "timestamp", "runs_tasks"], "properties": {
    "status": {"type": "string", "enum": ["healthy", "unhealthy"]},
    "timestamp": {"type": "string"},
    "runs_tasks": {"type": "boolean", "description": "Whether this process runs tasks (false: --no-worker, or the "
                                                     "web process over Redis)"},
    "task_queue": {"type": "string", "description": "The Redis queue tasks go to, its password hidden"},
    "workers_seen": {"type": ["integer", "null"], "minimum": 0,
                     "description": "Worker processes taking tasks from that queue now (null: Redis does not answer)"},
}}

#: The component that describes a multipart submit's `task` part.
TASK_PART_SCHEMA = "TaskPart"

TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict, description: str, *, empty_is_default: bool = True) -> dict:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
    if empty_is_default:
        # The server reads an empty value (`?limit=`) as if the parameter
        # were absent (app/requests.py), which is what allowEmptyValue says;
        # without it, checkers take the 200 for a bad value accepted.
        parameter["allowEmptyValue"] = True
    return parameter


def _wait(max_wait_s: float) -> dict:
    return _query("wait", {"type": "number", "minimum": 0},
                  f"Hold the request until the task is finished or this many seconds passed (at most {max_wait_s:g}).")


def _task_links(*operation_ids: str) -> dict:
    """OpenAPI links from an answer carrying `task_id` to the operations on
    that task, so clients and API fuzzers can follow a task they submitted."""
    return {op: {"operationId": op, "parameters": {"task_id": "$response.body#/task_id"}} for op in operation_ids}


def _operation(summary: str, responses: dict, *, tag: str, errors: tuple[str, ...], parameters: list | None = None,
               body: dict | None = None, op_id: str) -> dict:
    operation: dict[str, Any] = {"summary": summary, "operationId": op_id, "tags": [tag], "responses": dict(responses)}
    for code in errors:
        operation["responses"][code] = _json(_ref(ErrorResponse), ERRORS[code])
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = body
    return operation


def _form(settings) -> dict:
    """POST /tasks as multipart/form-data: the task part and a file, which
    Swagger UI (/docs) shows as a JSON box and a file chooser."""
    task = {"$ref": f"#/components/schemas/{TASK_PART_SCHEMA}",
            "example": {"instruction": "Count the rows of data.csv", "metadata": {}},
            "description": "The task: the JSON body of a JSON submit, without files. (Or send its fields as "
                           "form fields instead: instruction, metadata as JSON text, llm, ...)"}
    file = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream",
            "description": "A file, saved in the task's folder under its file name (sub-folders allowed: "
                           "'in/data.csv'). Send more files as more parts, under any part name."}
    return {"schema": {
        "type": "object", "required": [TASK_PART], "additionalProperties": False,
        "properties": {TASK_PART: task, "file": file},
        "description": f"A task with files: at most {settings.max_upload_files} files of "
                       f"{settings.max_upload_bytes} bytes in all (max_upload_files, max_upload_bytes).",
    }, "encoding": {TASK_PART: {"contentType": "application/json"}}}


def build_openapi(settings, *, secured: bool, providers: list[str] | None = None) -> dict:
    """The document for a server with these settings; `secured` adds the
    bearer scheme (and 401s) when an API token is configured; `providers`
    lists the LLM names a task may ask for."""
    auth = ("401",) if secured else ()
    # The description pages need no token while public_docs is on.
    docs_security = {"security": []} if settings.public_docs else {}
    # Any request may be refused (app/origin.py, app/peers.py), and any
    # endpoint that touches storage answers 503 when it fails.
    common = auth + ("403", "503", "500")
    refused = {"403": _json(_ref(ErrorResponse), ERRORS["403"])}
    # POST and DELETE also refuse a body that is not JSON.
    changing = ("415",)
    wait = _wait(settings.max_wait_s)
    paths = {
        "/": {"get": _operation("API information and endpoints", {"200": _json({"type": "object"}, "API information")},
                                errors=common, op_id="info", tag="service")},
        "/health": {"get": {
            "summary": "Health of the service, its broker and its storage", "operationId": "health", "tags": ["service"],
            "security": [],
            "responses": {"200": _json(HEALTH, "Healthy"), "503": _json(HEALTH, "Unhealthy"),
                          **refused},
        }},
        "/tasks": {
            "post": _operation(
                "Submit a task", {"200": {**_json({"oneOf": [_ref(SubmitResponse), _ref(TaskResult)]},
                                                  "The new task; with wait, its result when it finished in time"),
                                          "links": _task_links("get_task_status", "get_task_result", "stream_events",
                                                               "list_files", "cancel_task")}},
                errors=("400", "404", "409", "413", "507") + changing + common, op_id="submit_task", tag="tasks",
                parameters=[wait, {"name": "Idempotency-Key", "in": "header", "required": False,
                                   "schema": {"type": "string", "pattern": "^[\\x20-\\x7e]{1,255}$"},
                                   "description": "A repeated key returns the first task instead of starting another."}],
                body={"required": True, "content": {"application/json": {"schema": _ref(TaskSubmission)},
                                                    "multipart/form-data": _form(settings)}},
            ),
            "get": _operation(
                "List tasks, newest first", {"200": _json(_ref(TaskList), "A page of tasks")},
                errors=("400",) + common, op_id="list_tasks", tag="tasks",
                parameters=[
                    _query("status", {"type": "string", "enum": list(STATUSES)}, "Only tasks in this status", empty_is_default=False),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": settings.list_max_limit}, f"Page size (default {settings.list_default_limit})"),
                    _query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9}, "Tasks to skip"),
                ],
            ),
        },
        "/tasks/{task_id}": {
            "parameters": [TASK_ID],
            "get": _operation("Task status", {"200": _json(_ref(TaskStatus), "The task")},
                              errors=("400", "404") + common, parameters=[wait], op_id="get_task_status", tag="tasks"),
            "delete": _operation("Cancel a task", {"200": _json(_ref(CancelResponse), "Cancelled")},
                                 errors=("400", "404") + changing + common, op_id="cancel_task", tag="tasks"),
        },
        "/tasks/{task_id}/result": {
            "parameters": [TASK_ID],
            "get": _operation("Task result with everything that happened", {"200": _json(_ref(TaskResult), "The result")},
                              errors=("400", "404") + common, parameters=[wait], op_id="get_task_result", tag="tasks"),
        },
        "/tasks/{task_id}/events": {
            "parameters": [TASK_ID],
            "get": _operation(
                "Follow the task's events live; the stream ends after task_end or, with a callback_url, after "
                "the callback event of the delivery's last attempt (delivered, or no retry left)",
                {"200": {"description": "The events: SSE (id = seq, event = type, data = the JSON line) or NDJSON",
                         "content": {"text/event-stream": {"schema": SSE_EVENT},
                                     "application/x-ndjson": {"schema": {"type": "string"}}}}},
                errors=("400", "404") + common, op_id="stream_events", tag="events",
                parameters=[
                    _query("after", {"type": "integer", "minimum": 0, "maximum": 10**12}, "Start after this seq (also: the Last-Event-ID header)"),
                    _query("format", {"type": "string", "enum": ["sse", "ndjson"]}, "sse (default) or ndjson"),
                    {"name": "Last-Event-ID", "in": "header", "required": False,
                     "schema": {"type": "string", "pattern": "^[0-9]{0,12}$"}},
                ],
            ),
        },
        "/tasks/{task_id}/files": {
            "parameters": [TASK_ID],
            "get": _operation("Files the task's code left in its workspace", {"200": _json(_ref(FileList), "The files")},
                              errors=("404",) + common, op_id="list_files", tag="files"),
        },
        "/tasks/{task_id}/files/{path}": {
            "parameters": [TASK_ID, {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
                                     "description": "The file's path inside the workspace"}],
            "get": _operation("Download one file", {"200": {"description": "The file", "content": {
                "*/*": {"schema": {"type": "string", "format": "binary"}}}}},
                errors=("404",) + common, op_id="download_file", tag="files"),
        },
        "/openapi.json": {"get": {
            "summary": "This document", "operationId": "openapi", "tags": ["service"], **docs_security,
            "responses": {"200": _json({"type": "object"}, "The OpenAPI 3.1 document"), **refused},
        }},
        "/docs": {"get": {
            "summary": "Interactive API documentation (Swagger UI, served with no internet access)",
            "operationId": "docs", "tags": ["service"], **docs_security,
            "responses": {"200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}},
                          **refused},
        }},
        "/admin/cleanup": {
            "post": _operation(
                "Remove finished tasks older than max_age_hours", {"200": _json(_ref(MessageResponse), "How many went")},
                errors=("400",) + changing + common, op_id="cleanup", tag="admin",
                parameters=[_query("max_age_hours", {"type": "number", "minimum": 0, "maximum": 10**6},
                                   f"Age in hours (default {settings.max_age_hours:g})")],
            ),
        },
        "/metrics": {"get": _metrics_operation(settings, auth)},
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": API_NAME, "version": VERSION,
                 "description": "Submit natural-language tasks; an AI agent writes and runs code for each one."},
        "tags": TAGS,
        "paths": paths,
        "components": {"schemas": _schemas(providers, settings.max_upload_files)},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


def _metrics_operation(settings, auth: tuple[str, ...]) -> dict:
    """GET /metrics: needs the token unless public_metrics is on."""
    text = {"schema": {"type": "string"}}
    exposition = {"description": "Counters, histograms and gauges of the whole pipeline (README, Metrics): "
                                 "Prometheus text, or OpenMetrics when the Accept header asks for it",
                  "content": {"text/plain": text, "application/openmetrics-text": text}}
    operation = _operation("Prometheus metrics: tasks, LLM calls and tokens, code blocks, callbacks, HTTP requests",
                           {"200": exposition}, errors=(() if settings.public_metrics else auth) + ("403", "503", "500"),
                           op_id="metrics", tag="service")
    if settings.public_metrics:
        operation["security"] = []
    return operation


def _schemas(providers: list[str] | None, max_files: int) -> dict:
    schemas: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    # The rules app/uploads.py checks with its own messages, written out so
    # that checkers generate names and contents it takes.
    upload = schemas["FileUpload"]["properties"]
    upload["path"].update(pattern=PATH_PATTERN, maxLength=MAX_PATH_BYTES)
    upload["content_base64"]["pattern"] = BASE64_PATTERN
    for branch in schemas["TaskSubmission"]["properties"]["files"].get("anyOf", []):
        if branch.get("type") == "array":  # paths must differ too, which no schema can say
            branch.update(maxItems=max_files, uniqueItems=True)
    if providers:
        llm = schemas["TaskSubmission"]["properties"]["llm"]
        for branch in llm.get("anyOf", [llm]):
            if branch.get("type") == "string":
                branch["enum"] = sorted(providers)
    schemas[TASK_PART_SCHEMA] = _task_part(schemas["TaskSubmission"])
    return schemas


def _task_part(submission: dict) -> dict:
    """The `task` part of a multipart submit: the JSON body without `files`
    (a multipart submit sends its files as parts)."""
    properties = {name: value for name, value in submission["properties"].items() if name != "files"}
    return {**submission, "title": TASK_PART_SCHEMA, "properties": properties,
            "description": "The task part of a multipart/form-data submit: TaskSubmission without files."}


def endpoints(document: dict) -> dict[str, str]:
    """`GET /`'s listing, read off the document: operationId -> "METHOD /path"
    for every operation but the listing itself."""
    listed = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation and operation["operationId"] != "info":
                listed[operation["operationId"]] = f"{method.upper()} {path}"
    return listed
