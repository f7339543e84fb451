"""A task's artifacts: the files its code left in its workspace, listed and
opened so that nothing outside the workspace is ever read.

The workspace is written by untrusted code, which can leave symbolic links,
hard links, FIFOs and odd names there, and swap one for another while the
server looks. So a file is served only when it is the workspace's own
regular file, checked on the opened descriptor, not on the path:

- The path is resolved first (links inside the workspace may be followed,
  but only while their target stays inside), then the resolved path is
  opened one component at a time from the workspace's root, each with
  O_NOFOLLOW (folders also O_DIRECTORY): a link swapped in after the check
  makes the open fail instead of leading out.
- The file is opened with O_NONBLOCK (a FIFO would block the open until a
  writer came), then `fstat` must show a regular file with one link
  (`st_nlink == 1`): a hard link to a file elsewhere on the file system,
  which no path check can tell from the workspace's own file, is refused.
  Device nodes, which only root can make, fail the same check.

Names. The listing shows a file only when it can be served: a regular file
with one link, whose path is valid UTF-8. A path that is not (bytes left by
code that wrote Latin-1 names, say) cannot be written as JSON text, nor asked
for in a URL (Falcon decodes paths as UTF-8), so it is left out rather than
shown in a form that would not fetch it back. Names with control characters
(CR, LF, ...) are valid UTF-8: they are listed (JSON escapes them) and
served; the name offered in Content-Disposition has them, and quotes and
backslashes, replaced with "_" so no header can be split or broken.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from storage import format_ts

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class ArtifactNotFound(LookupError):
    """No file to serve at that path; the message says why."""


@dataclass
class Artifact:
    stream: BinaryIO
    size: int
    name: str  # the file's own name (after links), for its type and download name


def list_artifacts(workspace: Path, limit: int) -> tuple[list[dict], bool]:
    """The files `open_artifact` would serve (path, size, modified), sorted
    by path, at most `limit`; the flag says whether more were left out.
    Folders are read through descriptors (os.fwalk), so a folder swapped for
    a link while we walk is not entered."""
    found: list[dict] = []
    walker = os.fwalk(workspace, follow_symlinks=False)
    try:
        for folder, dirs, names, folder_fd in walker:
            dirs[:] = sorted(name for name in dirs if is_showable(name))
            relative = PurePosixPath(os.path.relpath(folder, workspace))
            for name in sorted(names):
                if not is_showable(name):
                    continue
                try:
                    info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
                except OSError:  # removed while we looked
                    continue
                if not is_own_file(info):
                    continue
                if len(found) == limit:
                    return found, True
                found.append({
                    "path": (relative / name).as_posix(),
                    "size": info.st_size,
                    "modified": format_ts(datetime.fromtimestamp(info.st_mtime, timezone.utc)),
                })
    finally:
        walker.close()  # closes the folder descriptors of a walk left early
    return found, False


def open_artifact(workspace: Path, path: str) -> Artifact:
    """The workspace's own regular file at `path`, opened for reading;
    ArtifactNotFound otherwise."""
    parts = resolve_inside(workspace, path)
    fd = _open_beneath(os.path.realpath(workspace), parts)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactNotFound("not a regular file")
        if info.st_nlink != 1:
            raise ArtifactNotFound("it has other links (a hard link to a file elsewhere is never served)")
        os.set_blocking(fd, True)
        stream = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return Artifact(stream=stream, size=info.st_size, name=parts[-1])


def resolve_inside(workspace: Path, path: str) -> tuple[str, ...]:
    """The components of `path` with every link resolved, relative to the
    workspace's root; ArtifactNotFound when it is missing, loops, or would
    lead outside the workspace."""
    relative = PurePosixPath(path)
    if not path or "\x00" in path or relative.is_absolute() or ".." in relative.parts:
        raise ArtifactNotFound("not a path inside the workspace")
    root = os.path.realpath(workspace)
    try:
        target = os.path.realpath(os.path.join(root, relative), strict=True)
    except OSError:  # missing, unreadable, or a link loop
        raise ArtifactNotFound("not found") from None
    if target == root or os.path.commonpath([root, target]) != root:
        raise ArtifactNotFound("not found")
    return PurePosixPath(target).relative_to(root).parts


def _open_beneath(root: str, parts: tuple[str, ...]) -> int:
    """A descriptor for root/parts, opened component by component with no
    link followed."""
    try:
        folder = os.open(root, _DIR_FLAGS)
    except OSError:
        raise ArtifactNotFound("not found") from None
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR_FLAGS, dir_fd=folder)
            os.close(folder)
            folder = inner
        return os.open(parts[-1], _FILE_FLAGS, dir_fd=folder)
    except OSError:  # a link or a non-folder where the resolved path had none
        raise ArtifactNotFound("not found") from None
    finally:
        os.close(folder)


def is_own_file(info: os.stat_result) -> bool:
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def is_showable(name: str) -> bool:
    """Whether a name read from disk is valid UTF-8 (os gives undecodable
    bytes back as lone surrogates, which UTF-8 cannot encode)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def download_name(name: str) -> str:
    """`name` safe for Content-Disposition: control characters, surrogates,
    quotes and backslashes become "_" (Falcon writes the rest, non-ASCII as
    RFC 5987 filename*)."""
    return "".join("_" if _unsafe_in_header(char) else char for char in name)


def _unsafe_in_header(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000 or char in '"\\'
