"""`create_app(system)`: the Falcon WSGI application around a task system.

The app holds no global state: the system is passed in, so tests and the
entry points each build their own, and each resource is given the one
collaborator it uses (the task service, the event feed, the health check).
"""

from __future__ import annotations

import json
import re

import falcon
from falcon.inspect import inspect_routes

from actors import BrokerUnavailable, TaskSystem, check_callback_url

from . import errors
from .auth import BearerAuth
from .event_stream import EventFeed
from .http_metrics import HttpRequestCounter
from .openapi import build_openapi, endpoints
from .origin import RequestOriginGuard
from .resources.admin import CleanupResource
from .resources.docs import add_docs
from .resources.events import TaskEvents
from .resources.files import TaskFile, TaskFiles
from .resources.info import HealthResource, RootResource
from .resources.metrics import MetricsResource
from .resources.tasks import TaskCollection, TaskItem, TaskResultResource
from .resources.ui import add_dashboard, is_dashboard
from .requests import RequestLimits
from .service import SubmitRules, TaskService
from .version import API_NAME
from .waiting import WaitBudget


def create_app(system: TaskSystem) -> falcon.App:
    """The app around `system`, the wiring of one process (actors/system.py):
    each resource gets only the part it uses."""
    settings = system.settings
    token = settings.api_token.get_secret_value() if settings.api_token else None
    # First, so nothing else runs for a request a foreign page made; Host is
    # left unchecked when a token is set (a rebinding page cannot know it).
    # POST /tasks also takes multipart/form-data (files: see uploads.py).
    middleware: list = [RequestOriginGuard(settings.cors_origins, None if token else settings.allowed_hosts,
                                            form_routes=frozenset({("POST", "/tasks")}))]
    if settings.cors_origins:
        origins = "*" if settings.cors_origins == ["*"] else settings.cors_origins
        middleware.append(falcon.CORSMiddleware(allow_origins=origins, expose_headers=["Content-Disposition"]))
    if token:
        middleware.append(BearerAuth(token, public_docs=settings.public_docs, public_metrics=settings.public_metrics))
    # Falcon's own router, made here so that the request counter can find
    # the route of a request refused before routing (a 401, a 403).
    router = falcon.routing.CompiledRouter()
    middleware.append(HttpRequestCounter(system.metrics.http_request, router.find))

    app = falcon.App(media_type=falcon.MEDIA_JSON, middleware=middleware, router=router)
    # ASCII-escaped JSON can carry any stored text (even a file name that is
    # not valid UTF-8) and is faster to make.
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=json.dumps)
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)

    budget = WaitBudget(settings.max_streams)
    limits = RequestLimits.from_settings(settings)
    service = task_service(system, budget)
    feed = EventFeed(system.store, budget, keepalive_s=settings.stream_keepalive_s,
                     # A callback attempt not recorded by its due time plus its own
                     # time limit and max_wait_s (the longest the API otherwise
                     # holds a request) is taken as lost, and ends the stream.
                     overdue_s=settings.callback_timeout_s + settings.max_wait_s)
    document = build_openapi(settings, secured=bool(token), providers=list(system.config.llm.providers))
    app.add_route("/", RootResource(endpoints(document)))
    app.add_route("/health", HealthResource(system.health))
    app.add_route("/tasks", TaskCollection(service, limits))
    app.add_route("/tasks/{task_id}", TaskItem(service, limits))
    app.add_route("/tasks/{task_id}/result", TaskResultResource(service, limits))
    app.add_route("/tasks/{task_id}/events", TaskEvents(feed))
    app.add_route("/tasks/{task_id}/files", TaskFiles(service, limits))
    app.add_route("/tasks/{task_id}/files/{path:path}", TaskFile(service))
    app.add_route("/admin/cleanup", CleanupResource(service, limits))
    app.add_route("/metrics", MetricsResource(system.metrics_export.render))
    add_docs(app, document, API_NAME)
    add_dashboard(app)
    check_documented(app, document)
    return app


def task_service(system: TaskSystem, budget: WaitBudget) -> TaskService:
    settings = system.settings
    rules = SubmitRules(
        max_instruction_chars=settings.max_instruction_chars,
        providers=tuple(system.config.llm.providers),
        check_callback_url=lambda url: check_callback_url(url, system.callback_policy),
    )
    return TaskService(system.store, system.keys, system.pipeline, rules, budget, cleanup=system.cleanup,
                       unavailable=(BrokerUnavailable,), cancel_wait_s=settings.cancel_wait_s,
                       on_submitted=system.metrics.task_submitted)


def check_documented(app: falcon.App, document: dict) -> None:
    """Every route the app serves is in the OpenAPI document and the other
    way round, read off the router (falcon.inspect), so they cannot drift.
    The Swagger UI page's own files (under /docs/) are not API routes, and
    neither is the dashboard (/ui and its files): it is a client of the API,
    a page for people, and the document describes what programs may call."""
    served = {_openapi_path(route.path) for route in inspect_routes(app)
              if not route.path.startswith("/docs/") and not is_dashboard(route.path)}
    documented = set(document["paths"])
    if served != documented:
        raise RuntimeError(f"routes and OpenAPI paths differ: served only {sorted(served - documented)}, "
                           f"documented only {sorted(documented - served)}")


def _openapi_path(template: str) -> str:
    """A Falcon route template (`{path:path}`) as an OpenAPI path (`{path}`)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", template)
