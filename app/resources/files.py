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

from ..artifacts import ArtifactNotFound, download_name, list_artifacts, open_artifact
from ..models import FileList, shape


class TaskFiles:
    def __init__(self, system):
        self.store = system.store
        self.settings = system.settings

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        workspace = self.store.workspace(task_id)
        listed, truncated = list_artifacts(workspace, self.settings.max_listed_files)
        resp.media = shape(FileList, {"task_id": self.store.get(task_id)["task_id"], "files": listed, "truncated": truncated})


class TaskFile:
    def __init__(self, system):
        self.store = system.store

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str, path: str) -> None:
        workspace = self.store.workspace(task_id)
        try:
            artifact = open_artifact(workspace, path)
        except ArtifactNotFound as exc:
            raise falcon.HTTPNotFound(description=f"Task {task_id} has no file {path!r}: {exc}") from None
        resp.content_type = mimetypes.guess_type(artifact.name)[0] or "application/octet-stream"
        resp.downloadable_as = download_name(artifact.name)
        resp.content_length = artifact.size
        resp.stream = artifact.stream
