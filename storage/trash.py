"""Deleting tasks so that nobody ever sees half a task.

A task is two folders: its state, ``tasks/<id>/``, and its workspace,
``workspaces/<id>/``. Both are renamed into the trash before anything is
removed: the state folder first — one atomic step, after which every reader
gets "not found" — then the workspace. Only then are they removed file by
file, the workspace first.

The trashed state folder, ``trash/<id>.<random>``, is also the note that the
workspace of <id> must go, so it is the last thing removed. A process killed
between the two renames (or whose second rename failed) leaves the note in
the trash and the workspace where it was; the next cleanup (`Trash.empty`)
reads the id from the note, takes the workspace and finishes. The trash is
empty but for such leftovers, so finishing them costs nothing in the usual
case, and the workspaces folder is never listed.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import NamedTuple

from .files import canonical_id

log = logging.getLogger("aipy.storage")

_STATE_FILES = ("task.json", "events.jsonl", ".lock")
_WORKSPACE_SUFFIX = ".workspace"


class Taken(NamedTuple):
    """A task renamed into the trash: its state folder and workspace there
    (None where there was none), and whether both renames happened."""

    state: Path | None
    workspace: Path | None
    complete: bool


class Trash:
    """Takes the tasks of one store apart.

    `folder` is the trash (``<root>/trash/``). Workspaces are renamed into
    `workspace_folder`, which defaults to `folder`: a store whose workspaces
    live on another file system passes a trash there, as a rename cannot
    cross file systems.
    """

    def __init__(self, tasks_dir: Path, workspaces_dir: Path, folder: Path, workspace_folder: Path | None = None):
        self.tasks_dir = tasks_dir
        self.workspaces_dir = workspaces_dir
        self.folder = folder
        self.workspace_folder = workspace_folder or folder

    def take(self, task_id: str) -> Taken:
        """Rename the task's state folder, then its workspace, into the trash.

        An OSError of the first rename propagates, and nothing has changed.
        One of the second is logged, not raised: the task is gone for every
        reader already, and the note left in the trash lets `empty` finish."""
        token = secrets.token_hex(4)
        state = _rename(self.tasks_dir / task_id, self.folder / f"{task_id}.{token}")
        try:
            workspace = self._take_workspace(task_id, f"{task_id}.{token}")
        except OSError as exc:
            log.warning("The workspace of task %s was not moved to the trash (%s); the next cleanup removes it",
                        task_id, exc)
            return Taken(state, None, False)
        return Taken(state, workspace, True)

    def _take_workspace(self, task_id: str, name: str) -> Path | None:
        return _rename(self.workspaces_dir / task_id, self.workspace_folder / f"{name}{_WORKSPACE_SUFFIX}")

    def remove(self, taken: Taken) -> None:
        """Remove what `take` renamed: the workspace, then the state folder.
        After an incomplete take the state folder stays, as the note."""
        if taken.workspace is not None:
            remove_tree(taken.workspace)
        if taken.state is not None and taken.complete:
            remove_tree(taken.state, _STATE_FILES)

    def delete(self, task_id: str) -> bool:
        """Take and remove a task (or a workspace whose task is gone); True
        when its state folder was there."""
        taken = self.take(task_id)
        self.remove(taken)
        return taken.state is not None

    def empty(self) -> None:
        """Remove whatever earlier, interrupted deletions left in the trash,
        first taking the workspace each state folder there names."""
        for name in _names(self.folder):
            task_id = _task_of(name)
            if task_id is not None:
                try:
                    workspace = self._take_workspace(task_id, name)
                except OSError as exc:
                    log.warning("The workspace of deleted task %s is still not removed: %s", task_id, exc)
                    continue  # keep the note; the next cleanup retries
                if workspace is not None:
                    remove_tree(workspace)
            remove_tree(self.folder / name, _STATE_FILES if task_id else ())
        if self.workspace_folder != self.folder:
            for name in _names(self.workspace_folder):
                remove_tree(self.workspace_folder / name)


def _rename(source: Path, target: Path) -> Path | None:
    """`target`, once `source` is renamed to it; None if `source` is gone."""
    try:
        os.rename(source, target)
    except FileNotFoundError:
        return None
    return target


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _task_of(name: str) -> str | None:
    """The task id of a trashed state folder's name (``<id>.<hex>``), else None."""
    task_id, dot, token = name.partition(".")
    return task_id if dot and canonical_id(task_id) == task_id and "." not in token else None


def remove_tree(path: Path, known_files: tuple[str, ...] = ()) -> None:
    """Remove a trashed folder. A folder holding only `known_files` (a state
    folder's three files; an untouched workspace holds none) takes a call per
    file and one rmdir; anything else falls back to rmtree, which follows no
    link out of the folder."""
    try:
        for name in known_files:
            try:
                os.unlink(path / name)
            except FileNotFoundError:
                pass
        os.rmdir(path)
    except FileNotFoundError:
        pass  # removed meanwhile by another cleanup
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
