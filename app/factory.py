"""`create_app(system)`: the Falcon WSGI application around a task system.

The app holds no global state: the system (store, broker, settings) is passed
in, so tests and the entry points each build their own.
"""

from __future__ import annotations

import json

import falcon

from . import errors
from .auth import BearerAuth
from .openapi import build_openapi
from .origin import RequestOriginGuard
from .resources.admin import CleanupResource
from .resources.docs import add_docs
from .resources.events import TaskEvents
from .resources.files import TaskFile, TaskFiles
from .resources.info import HealthResource, RootResource
from .resources.tasks import TaskCollection, TaskItem, TaskResultResource
from .version import API_NAME
from .waiting import WaitBudget


def create_app(system) -> falcon.App:
    settings = system.settings
    token = settings.api_token.get_secret_value() if settings.api_token else None
    # First, so nothing else runs for a request a foreign page made; Host is
    # left unchecked when a token is set (a rebinding page cannot know it).
    middleware: list = [RequestOriginGuard(settings.cors_origins, None if token else settings.allowed_hosts)]
    if settings.cors_origins:
        origins = "*" if settings.cors_origins == ["*"] else settings.cors_origins
        middleware.append(falcon.CORSMiddleware(allow_origins=origins, expose_headers=["Content-Disposition"]))
    if token:
        middleware.append(BearerAuth(token, public_docs=settings.public_docs))

    app = falcon.App(media_type=falcon.MEDIA_JSON, middleware=middleware)
    # ASCII-escaped JSON can carry any stored text (even a file name that is
    # not valid UTF-8) and is faster to make.
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=json.dumps)
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)
    budget = WaitBudget(settings.max_streams)
    app.add_route("/", RootResource())
    app.add_route("/health", HealthResource(system))
    app.add_route("/tasks", TaskCollection(system, budget))
    app.add_route("/tasks/{task_id}", TaskItem(system, budget))
    app.add_route("/tasks/{task_id}/result", TaskResultResource(system, budget))
    app.add_route("/tasks/{task_id}/events", TaskEvents(system, budget))
    app.add_route("/tasks/{task_id}/files", TaskFiles(system))
    app.add_route("/tasks/{task_id}/files/{path:path}", TaskFile(system))
    app.add_route("/admin/cleanup", CleanupResource(system))
    document = build_openapi(settings, secured=bool(token), providers=list(system.config.llm.providers))
    add_docs(app, document, API_NAME)
    return app
