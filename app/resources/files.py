"""The files a task's code left in its workspace: its artifacts.

GET /tasks/{task_id}/files lists them (path, size, modified); GET
/tasks/{task_id}/files/{path} downloads one with a content type guessed from
its name. Which files are served, and how odd names are shown, is decided in
app/artifacts.py: only the workspace's own regular files, never anything
outside it.
"""

from __future__ import annotations

import mimetypes

import falcon

from ..artifacts import download_name
from ..models import FileList, shape
from ..requests import RequestLimits
from ..service import TaskService


class TaskFiles:
    def __init__(self, service: TaskService, limits: RequestLimits):
        self.service = service
        self.limits = limits

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        stored_id, listed, truncated = self.service.files(task_id, self.limits.max_listed_files)
        resp.media = shape(FileList, {"task_id": stored_id, "files": listed, "truncated": truncated})


#: A file the model's code wrote is content of the model's choosing: served
#: as an attachment, it is never shown as a page of this origin (where the
#: dashboard keeps its token); and should a browser show it anyway (a saved
#: link opened, an old browser), it runs in a sandbox with no script, under
#: the type it was sent with.
HOSTILE_CONTENT_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "X-Content-Type-Options": "nosniff",
}


class TaskFile:
    def __init__(self, service: TaskService):
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str, path: str) -> None:
        artifact = self.service.open_file(task_id, path)
        resp.content_type = mimetypes.guess_type(artifact.name)[0] or "application/octet-stream"
        resp.downloadable_as = download_name(artifact.name)
        resp.set_headers(HOSTILE_CONTENT_HEADERS)
        resp.content_length = artifact.size
        resp.stream = artifact.stream
