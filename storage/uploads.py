"""Saving the files handed in with a new task into its workspace.

The names were checked at the edge (app/uploads.py: relative, ``/`` between
folders, no ``..``, no control characters, no duplicates); they are checked
again here, part by part, so that this module alone cannot be made to write
outside the workspace. Every folder is opened relative to its parent's
descriptor with no link followed, so a link on disk (there is none in a
fresh workspace, but a follow-up's copy is filled first) cannot redirect a
write either.

Files get mode 0644 and folders 0755 whatever the umask: they are the
service's own until the task's first block hands the workspace's contents
to its uid (agent/sandbox). A name that a follow-up's copied files already
hold is replaced; a folder where a file should go, or a file where a folder
should, is an `UploadConflict` naming the file.

`WorkspaceUploads` is a mixin of `TaskStore` (store.py holds the folders).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable, Iterable

from . import layout
from .files import CREATE_NEW, OPEN_FOLDER, write_all
from .errors import StorageError, storage_error



class UploadConflict(StorageError):
    """An uploaded file's name cannot be used in the workspace (a folder of
    that name is there, or a file where one of its folders should be)."""


class WorkspaceUploads:
    """`put_files` for a `TaskStore`."""

    workspace: Callable[[object], Path]
    _fsync: bool

    def put_files(self, task_id: object, files: Iterable[tuple[str, bytes]]) -> int:
        """Save `files`, (path, bytes) pairs with `/` between folders, in
        the task's workspace, making folders as needed; how many were saved.
        StorageError when one cannot be (UploadConflict for a name in the
        way; the caller removes the task, so a half-filled workspace goes
        with it)."""
        workspace = self.workspace(task_id)
        try:
            return write_files(str(workspace), files, fsync=self._fsync)
        except OSError as exc:
            raise storage_error("save the uploaded files", exc, workspace) from exc


def write_files(workspace: str, files: Iterable[tuple[str, bytes]], *, fsync: bool = False) -> int:
    """Write each (path, bytes) into the folder `workspace`; how many were
    written. OSError when the disk refuses (full, read-only)."""
    root = os.open(workspace, OPEN_FOLDER)
    written = 0
    try:
        for path, data in files:
            _write_one(root, path, data, fsync)
            written += 1
    finally:
        os.close(root)
    return written


def _parts(path: str) -> list[str]:
    """The names along `path`, "." ones left out; UploadConflict for a path
    that could leave the folder (absolute, "..", NUL) or names nothing."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts or path.startswith("/") or ".." in parts or "\0" in path:
        raise UploadConflict(f"cannot save the uploaded file {path!r}: not a path inside the workspace")
    return parts


def _write_one(root: int, path: str, data: bytes, fsync: bool) -> None:
    *folders, name = _parts(path)
    opened: list[int] = []
    try:
        parent = root
        for folder in folders:
            parent = _enter(parent, folder, path)
            opened.append(parent)
        _replace(parent, name, data, path, fsync)
    finally:
        for fd in opened:
            os.close(fd)


def _enter(parent: int, name: str, path: str) -> int:
    """The folder `name` inside `parent`, made if missing, opened without
    following a link."""
    try:
        os.mkdir(name, layout.GIVEN_FOLDER_MODE, dir_fd=parent)
        made = True
    except FileExistsError:
        made = False
    try:
        fd = os.open(name, OPEN_FOLDER, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise UploadConflict(f"cannot save the uploaded file {path!r}: {name!r} is already a file "
                                 "(a file of the previous task)") from None
        raise
    if made:
        os.fchmod(fd, layout.GIVEN_FOLDER_MODE)
    return fd


def _replace(parent: int, name: str, data: bytes, path: str, fsync: bool) -> None:
    """Write `data` as the new file `name` in `parent`, taking the place of
    a file of that name (a follow-up's copy), never of a folder."""
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise UploadConflict(f"cannot save the uploaded file {path!r}: a folder of that name is already "
                             "there (a folder of the previous task)") from None
    fd = os.open(name, CREATE_NEW, layout.GIVEN_FILE_MODE, dir_fd=parent)
    try:
        os.fchmod(fd, layout.GIVEN_FILE_MODE)
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
