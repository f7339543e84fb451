"""Every error answers JSON `{"detail": "..."}`: Falcon's own (bad JSON,
unknown route, wrong method), ours, and anything unexpected (a 500 that logs
the traceback but never shows it to the caller)."""

from __future__ import annotations

import json
import logging

import falcon

from storage import StorageError, TaskNotFound

from .service import FileNotInWorkspace, InvalidRequest, NotStored, PreviousTaskMissing, PreviousTaskUnfinished
from .waiting import TooBusy

log = logging.getLogger("aipy.http")


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    detail = error.description or error.title or "error"
    if isinstance(error, falcon.HTTPRouteNotFound) or (error.status == falcon.HTTP_404 and not error.description):
        detail = f"Not found: {req.method} {req.path}"
    elif isinstance(error, falcon.HTTPMethodNotAllowed):
        allowed = resp.get_header("Allow") or ""
        detail = f"Method {req.method} is not allowed on {req.path}; allowed: {allowed}"
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps({"detail": detail}).encode()


def task_not_found(req, resp, exc: TaskNotFound, params) -> None:
    raise falcon.HTTPNotFound(description=f"Task {params.get('task_id', exc.task_id)} not found")


def storage_failed(req, resp, exc: StorageError, params) -> None:
    log.error("Storage failed on %s %s: %s", req.method, req.path, exc)
    raise falcon.HTTPServiceUnavailable(description=f"storage unavailable: {exc}")


def invalid_request(req, resp, exc: InvalidRequest, params) -> None:
    raise falcon.HTTPBadRequest(description=str(exc))


def not_stored(req, resp, exc: NotStored, params) -> None:
    if exc.full:  # 507, not 503: trying again helps only once someone frees space
        raise falcon.HTTPInsufficientStorage(description=str(exc))
    raise falcon.HTTPServiceUnavailable(description=str(exc))


def no_such_file(req, resp, exc: FileNotInWorkspace, params) -> None:
    raise falcon.HTTPNotFound(description=str(exc))


def previous_missing(req, resp, exc: PreviousTaskMissing, params) -> None:
    raise falcon.HTTPNotFound(description=str(exc))


def previous_unfinished(req, resp, exc: PreviousTaskUnfinished, params) -> None:
    raise falcon.HTTPConflict(description=str(exc))


def too_busy(req, resp, exc: TooBusy, params) -> None:
    raise falcon.HTTPServiceUnavailable(description=str(exc))


def unexpected(req, resp, exc: Exception, params) -> None:
    if isinstance(exc, falcon.HTTPError):
        raise exc
    log.exception("Unhandled error on %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(description="internal server error; the server log has the details")


def install(app: falcon.App) -> None:
    app.set_error_serializer(serialize_error)
    # Falcon calls the handler of the most specific class that matches.
    app.add_error_handler(Exception, unexpected)
    app.add_error_handler(StorageError, storage_failed)
    app.add_error_handler(TaskNotFound, task_not_found)
    app.add_error_handler(InvalidRequest, invalid_request)
    app.add_error_handler(NotStored, not_stored)
    app.add_error_handler(FileNotInWorkspace, no_such_file)
    app.add_error_handler(TooBusy, too_busy)
    app.add_error_handler(PreviousTaskMissing, previous_missing)
    app.add_error_handler(PreviousTaskUnfinished, previous_unfinished)
