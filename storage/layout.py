"""The data folder on disk: its folders, their modes, and the upgrade of a
1.0.0 data folder, whose workspaces were inside the task folders.

    <root>/                  0711  others pass through, to a workspace they were given
    <root>/tasks/            0700  the state: <id>/{task.json,events.jsonl,.lock}, index.jsonl
    <root>/trash/            0700  what is being deleted (see trash.py)
    <root>/idempotency/      0700  the keys (see idempotency.py)
    <root>/workspaces/       0711  others may enter a workspace by name, never list them
    <root>/workspaces/<id>/  0700  one task's workspace (the sandbox hands it to the
                                   code's uid while the task runs)
    <root>/layout-version    "2": the workspaces are out of the task folders

A `workspaces` folder may be placed elsewhere (another volume): it gets the
same mode, and a trash of its own when it is on another file system.

The modes matter when the service runs as root and the code as other uids:
the code is given its own workspace and can reach nothing of the state.
They are set with chmod after mkdir, so the umask cannot change them, and
applied to existing folders at every open (an upgraded data folder), but
only ever tightened: a mode the operator chose tighter is kept.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import threading
from pathlib import Path

from . import files
from .errors import StorageError, storage_error
from .files import canonical_id

log = logging.getLogger("aipy.storage")

ROOT_MODE = 0o711
STATE_MODE = 0o700
WORKSPACES_MODE = 0o711
WORKSPACE_MODE = 0o700
#: Files and folders the service puts in a workspace (uploads, a follow-up's
#: copy): its own until the task's first block hands them to its uid.
GIVEN_FILE_MODE = 0o644
GIVEN_FOLDER_MODE = 0o755

#: The layout this code writes; 1.0.0 data folders have no marker.
VERSION = 2
VERSION_FILE = "layout-version"

#: The upgrade's lock within this process (the flock covers the others).
_UPGRADE_THREAD_LOCK = threading.Lock()


def make_dir(path: Path, mode: int, umask: int | None = None) -> None:
    """Create the folder `path` with exactly `mode`, whatever the umask;
    FileExistsError if it exists. Given the process's `umask` (see
    `read_umask`), the chmod is left out when it took no bit of `mode`."""
    os.mkdir(path, mode)
    fix_mode(path, mode, umask)


def fix_mode(path: Path, mode: int, umask: int | None = None) -> None:
    """Give a folder just made with `mode` all of it, if `umask` (None:
    unknown) may have taken any. Skipping the chmod matters under load:
    each syscall hands the GIL to another thread."""
    if umask is None or umask & mode:
        os.chmod(path, mode)


def read_umask() -> int | None:
    """The process's umask as Linux shows it, without setting it (os.umask
    would, racing threads that create files meanwhile); None if unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def ensure_dir(path: Path, mode: int) -> None:
    """Make sure `path` is a folder with no permission beyond `mode`: a new
    one gets exactly `mode`, an existing one loses the bits `mode` lacks.

    Two processes opening a new data folder at once cannot undo each other:
    mkdir(path, mode) never grants a bit beyond `mode`, so the one that finds
    the folder made has nothing to take away from it."""
    try:
        make_dir(path, mode)
    except FileExistsError:
        tighten(path, mode)


def tighten(path: Path, mode: int) -> None:
    """Take from `path` the permission bits `mode` lacks; add none."""
    current = stat.S_IMODE(os.stat(path).st_mode)
    if current & ~mode:
        os.chmod(path, current & mode)


def prepare(root: Path, workspaces: Path) -> None:
    """Create or tighten the data folder's folders, and upgrade a 1.0.0
    layout. OSError propagates (the caller names the data folder)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    ensure_dir(root, ROOT_MODE)
    for name in ("tasks", "trash", "idempotency"):
        ensure_dir(root / name, STATE_MODE)
    workspaces.parent.mkdir(parents=True, exist_ok=True)  # when placed outside the root
    ensure_dir(workspaces, WORKSPACES_MODE)
    if layout_version(root) < VERSION:
        upgrade(root, workspaces)


def workspace_trash(trash_dir: Path, workspaces: Path) -> Path:
    """Where deleted workspaces are renamed to: the trash itself, or, when
    the workspaces live on another file system (a rename cannot cross one),
    ``<workspaces>/.trash`` (mode 0700; the trash's name is no task id)."""
    if os.stat(workspaces).st_dev == os.stat(trash_dir).st_dev:
        return trash_dir
    ensure_dir(workspaces / ".trash", STATE_MODE)
    return workspaces / ".trash"


def layout_version(root: Path) -> int:
    """The layout version recorded in the data folder; 1 when none is (1.0.0)."""
    try:
        return int((root / VERSION_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return 1


def upgrade(root: Path, workspaces: Path) -> None:
    """Move the 1.0.0 workspaces out, then record the layout, so later opens
    cost one small read. Held under a lock: the processes of a service start
    together, and the others wait for the first to finish rather than race it.
    A run killed midway is simply run again by the next open. A new data
    folder takes this path once too, at the cost of listing an empty folder."""
    with files.flocked(root / "tasks" / ".layout.lock", _UPGRADE_THREAD_LOCK):
        if layout_version(root) >= VERSION:
            return
        moved = move_workspaces(root / "tasks", workspaces)
        if moved:
            log.warning("Moved %d task workspace(s) from %s/<id>/workspace to %s/<id> (layout %d)",
                        moved, root / "tasks", workspaces, VERSION)
        files.atomic_write(root / VERSION_FILE, f"{VERSION}\n".encode())


def move_workspaces(tasks_dir: Path, workspaces: Path) -> int:
    """Rename each ``tasks/<id>/workspace`` to ``workspaces/<id>``, mode
    tightened to WORKSPACE_MODE; returns how many moved.

    One pass over the folder names, once per data folder: the index could
    name the tasks too, but it may lag the folders after a crash, and loading
    it costs more than this pass. A rename moves no data; a workspaces folder
    on another file system than the tasks fails with EXDEV (move them by hand,
    then write the version file)."""
    moved = 0
    with os.scandir(tasks_dir) as entries:
        for entry in entries:
            if canonical_id(entry.name) != entry.name:
                continue
            target = workspaces / entry.name
            try:
                os.rename(Path(entry.path) / "workspace", target)
            except FileNotFoundError:
                continue  # a task made since, or moved by a run that was killed
            tighten(target, WORKSPACE_MODE)
            moved += 1
    return moved


def check_writable(tasks_dir: Path, workspaces_dir: Path) -> None:
    """Raise StorageError unless both folders exist, the data folder takes a
    write and at least 1 MB is free (what /health reports)."""
    try:
        if not tasks_dir.is_dir():
            raise StorageError(f"the data directory {tasks_dir} is missing; "
                               "check AIPYTHON_DATA_DIR and that its volume is mounted")
        if not workspaces_dir.is_dir():
            raise StorageError(f"the workspaces folder {workspaces_dir} is missing; "
                               "check that its volume is mounted")
        fs = os.statvfs(tasks_dir)
        if fs.f_bavail * fs.f_frsize < 1 << 20:
            raise StorageError(f"no space left on device for {tasks_dir}; free disk space")
        fd, name = tempfile.mkstemp(dir=tasks_dir, prefix=".check-")
        try:
            files.write_all(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        raise storage_error("write to the data directory", exc, tasks_dir) from exc
