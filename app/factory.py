"""`create_app(system)`: the Falcon WSGI application around a task system.

The app holds no global state: the system (store, broker, settings) is passed
in, so tests and the entry points each build their own.
"""

from __future__ import annotations

import falcon

from . import errors
from .resources.admin import CleanupResource
from .resources.info import HealthResource, RootResource
from .resources.tasks import TaskCollection, TaskItem, TaskResultResource


def create_app(system) -> falcon.App:
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)
    app.add_route("/", RootResource())
    app.add_route("/health", HealthResource(system))
    app.add_route("/tasks", TaskCollection(system))
    app.add_route("/tasks/{task_id}", TaskItem(system))
    app.add_route("/tasks/{task_id}/result", TaskResultResource(system))
    app.add_route("/admin/cleanup", CleanupResource(system))
    return app
