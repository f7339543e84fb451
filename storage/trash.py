"""Deleting task folders so that nobody ever sees half a task.

A folder is first renamed into ``<root>/trash/`` — one atomic step, after
which every reader gets "not found" — and only then removed file by file.
A process that dies mid-removal leaves its leftovers in the trash, which the
next cleanup empties; the tasks folder never holds a partly deleted task.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

_KNOWN_FILES = ("task.json", "events.jsonl", ".lock")


def move_to_trash(folder: Path, trash_dir: Path) -> Path | None:
    """Rename `folder` into the trash; None if it was already gone."""
    target = trash_dir / f"{folder.name}.{secrets.token_hex(4)}"
    try:
        os.rename(folder, target)
    except FileNotFoundError:
        return None
    return target


def remove_tree(path: Path) -> None:
    """Remove a trashed task folder. The usual folder (three files and an
    empty workspace) is removed with five calls; anything else by rmtree."""
    try:
        for name in _KNOWN_FILES:
            try:
                os.unlink(path / name)
            except FileNotFoundError:
                pass
        os.rmdir(path / "workspace")
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def empty_trash(trash_dir: Path) -> None:
    """Remove whatever an earlier, interrupted deletion left behind."""
    try:
        names = os.listdir(trash_dir)
    except FileNotFoundError:
        return
    for name in names:
        remove_tree(trash_dir / name)
