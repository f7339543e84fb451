"""The files a task's code left in its workspace: its artifacts.

GET /tasks/{task_id}/files lists them (path, size, modified); GET
/tasks/{task_id}/files/{path} downloads one with a content type guessed from
its name. A path is resolved (links included) and must stay inside the
workspace, so no request can read anything else on the server.
"""

from __future__ import annotations

import mimetypes
import os
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from stat import S_ISREG

import falcon

from storage import format_ts

from ..models import FileList, shape


class TaskFiles:
    def __init__(self, system):
        self.store = system.store
        self.settings = system.settings

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        workspace = self.store.workspace(task_id)
        listed, truncated = list_files(workspace, self.settings.max_listed_files)
        resp.media = shape(FileList, {"task_id": self.store.get(task_id)["task_id"], "files": listed, "truncated": truncated})


class TaskFile:
    def __init__(self, system):
        self.store = system.store

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str, path: str) -> None:
        workspace = self.store.workspace(task_id)
        target = resolve_inside(workspace, path)
        try:
            if target is None or not target.is_file():
                raise FileNotFoundError(path)
            stream = open(target, "rb")
            size = os.fstat(stream.fileno()).st_size
        except OSError:  # gone, unreadable, or not a file: as good as absent
            raise falcon.HTTPNotFound(description=f"Task {task_id} has no file {path!r}") from None
        resp.content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        resp.downloadable_as = target.name
        resp.content_length = size
        resp.stream = stream


def list_files(workspace: Path, limit: int) -> tuple[list[dict], bool]:
    """Regular files under `workspace` (links are not followed), sorted by
    path, at most `limit` of them; the flag says whether more were left out."""
    found: list[dict] = []
    for folder, dirs, names in os.walk(workspace):
        dirs.sort()
        for name in sorted(names):
            full = Path(folder, name)
            try:
                stat = full.lstat()
            except OSError:  # removed while we looked
                continue
            if S_ISREG(stat.st_mode):
                if len(found) == limit:
                    return found, True
                found.append({
                    "path": full.relative_to(workspace).as_posix(),
                    "size": stat.st_size,
                    "modified": format_ts(datetime.fromtimestamp(stat.st_mtime, timezone.utc)),
                })
    return found, False


def resolve_inside(workspace: Path, path: str) -> Path | None:
    """`path` under `workspace`, or None when it would lead outside it."""
    if not path or "\x00" in path or "\\" in path:
        return None
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts:
        return None
    try:
        root = workspace.resolve()
        target = (root / relative).resolve()
    except (OSError, RuntimeError):  # a link loop
        return None
    return target if target.is_relative_to(root) and target != root else None
