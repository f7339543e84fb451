"""Copying a finished task's workspace into a follow-up's new one.

The source was written by model code, so it is read as hostile: every
folder and file is opened relative to its parent's descriptor with no link
followed (a link planted anywhere, even replacing a folder mid-copy, cannot
make the service read a file outside the workspace), only regular files and
folders are copied, and a file with more than one name (a hard link, which
may be another file of the host) is left out. Links, FIFOs and devices are
left out too. The copies are the service's own (files 0644, folders 0755)
until the follow-up's first block hands them to its uid.
"""

from __future__ import annotations

import logging
import os
import stat

from . import files, layout

log = logging.getLogger("aipy.storage")

_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

#: Deeper folders are left out (a workspace nested this deep is hostile).
MAX_DEPTH = 64


def copy_tree(source: str, target: str) -> int:
    """Copy the folders and regular files of `source` into the existing,
    empty folder `target`; returns how many files were copied. Raises
    OSError when the target cannot be written (a full disk)."""
    src = os.open(source, files.OPEN_FOLDER)
    dst = os.open(target, files.OPEN_FOLDER)
    try:
        return _copy_folder(src, dst, 0)
    finally:
        os.close(src)
        os.close(dst)


def _copy_folder(src: int, dst: int, depth: int) -> int:
    copied = 0
    for entry in os.scandir(src):
        name = entry.name
        try:
            info = os.stat(name, dir_fd=src, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode) and depth < MAX_DEPTH:
            copied += _copy_subfolder(src, dst, name, depth)
        elif stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            copied += _copy_file(src, dst, name)
    return copied


def _copy_subfolder(src: int, dst: int, name: str, depth: int) -> int:
    try:
        inner_src = os.open(name, files.OPEN_FOLDER, dir_fd=src)
    except OSError:  # replaced by a link or removed meanwhile
        return 0
    try:
        os.mkdir(name, layout.GIVEN_FOLDER_MODE, dir_fd=dst)
        inner_dst = os.open(name, files.OPEN_FOLDER, dir_fd=dst)
        try:
            os.chmod(inner_dst, layout.GIVEN_FOLDER_MODE)
            return _copy_folder(inner_src, inner_dst, depth + 1)
        finally:
            os.close(inner_dst)
    finally:
        os.close(inner_src)


def _copy_file(src: int, dst: int, name: str) -> int:
    try:
        fd_in = os.open(name, _FILE, dir_fd=src)
    except OSError:  # a link or a FIFO put in its place meanwhile
        return 0
    try:
        info = os.fstat(fd_in)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return 0
        fd_out = os.open(name, files.CREATE_NEW, layout.GIVEN_FILE_MODE, dir_fd=dst)
        try:
            os.fchmod(fd_out, layout.GIVEN_FILE_MODE)
            offset = 0
            while offset < info.st_size:
                sent = os.sendfile(fd_out, fd_in, offset, info.st_size - offset)
                if sent == 0:
                    break
                offset += sent
        finally:
            os.close(fd_out)
        return 1
    finally:
        os.close(fd_in)
