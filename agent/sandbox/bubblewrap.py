"""The bubblewrap command line for one block.

Inside, the block sees the host read-only, with the service's data and config
folders, home folders and /tmp masked by empty tmpfs mounts; the interpreter
bound back in wherever it is installed (also under /tmp or a home folder);
only its workspace and its scratch folder writable; its own pid, ipc, uts
and (with network "none") network namespaces; and it dies with the worker
thread that started it.

Identity differs with who runs the service:
- as root, bwrap runs privileged (no user namespace: one would map the
  sandbox to host root) keeping only CAP_SETUID and CAP_SETGID, which the
  bootstrap uses to drop to the task's own uid before any code runs; after
  that the block has no capabilities in any namespace, and the mounts belong
  to the host's user namespace, so it can neither unmount nor remount them;
- otherwise, in a user namespace of its own with every capability dropped
  and no further user namespaces allowed.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

#: Size of the tmpfs that masks a folder: room for the mount points of what
#: is bound back inside it, and nothing worth filling.
MASK_BYTES = 1 << 20

#: Host folders every block is kept from, besides the service's own.
DEFAULT_MASKS = ("/root", "/home", "/tmp", "/var/tmp", "/run/aipython-agent")


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def _real(path: str | os.PathLike) -> str:
    return os.path.realpath(path)


def _unsearchable_ancestor(path: str) -> str | None:
    """The highest folder above `path` that other users cannot pass through
    (no o+x), or None. Such a folder is masked and `path` bound back inside
    the mask, so the block's uid can reach `path` without reaching siblings."""
    parts = Path(path).parts
    for depth in range(2, len(parts)):
        folder = os.path.join(*parts[:depth])
        try:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return folder
        except OSError:
            return None
    return None


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _normalise_masks(masks: list[str]) -> list[str]:
    """Existing folders, each once, parents first, none inside another."""
    kept: list[str] = []
    for mask in sorted({_real(m) for m in masks}, key=lambda p: (p.count(os.sep), p)):
        if mask == "/" or not os.path.isdir(mask):
            continue
        if any(mask == k or _inside(mask, k) for k in kept):
            continue
        kept.append(mask)
    return kept


def bubblewrap_argv(bwrap: str, *, workspace: Path, scratch: Path, hide: list[str],
                    interpreter_roots: list[str], network: str, as_root: bool,
                    tmp_bytes: int, inside: Path | None = None) -> list[str]:
    """bwrap and its options, ending with "--": the block's command follows.
    The workspace is bound at `inside` (default: its own path), where the
    task's code has seen it since its first block (see Session.inside)."""
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if as_root:
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    if network == "none":
        argv.append("--unshare-net")
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]

    ws, seen, sc = _real(workspace), _real(inside or workspace), _real(scratch)
    keep = [_real(r) for r in interpreter_roots] + [seen, sc]
    masks = [*DEFAULT_MASKS, *hide]
    masks += [a for a in map(_unsearchable_ancestor, keep) if a]
    masks = _normalise_masks(masks)
    for mask in masks:
        if mask == "/tmp":  # a private /tmp, as writable for the block as the host's
            argv += ["--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", mask]
        else:
            argv += ["--size", str(MASK_BYTES), "--tmpfs", mask]
    # Only what a mask hid is bound back: binding anything else again (say
    # /usr) would be useless, and binding a folder above a mask would undo it.
    roots = [r for r in dict.fromkeys(_real(r) for r in interpreter_roots) if os.path.isdir(r)]
    roots = [r for r in roots if not any(_inside(r, other) for other in roots)]
    for root in roots:
        argv += _bind_back(root, masks, "--ro-bind")
    argv += _bind_back(sc, masks, "--bind") + _bind_back(ws, masks, "--bind", at=seen)
    # A mask is read-only once what it must show is bound inside: as a user
    # the tmpfs would be the block's own to fill (and to forge files in).
    for mask in masks:
        if mask != "/tmp":
            argv += ["--remount-ro", mask]
    # The bootstrap enters the workspace once it runs as the task's uid: bwrap
    # itself, without CAP_DAC_OVERRIDE, may not enter a folder that uid owns.
    return argv + ["--chdir", "/", "--"]


def _bind_back(path: str, masks: list[str], how: str, at: str | None = None) -> list[str]:
    """Bind `path` at `at` (default: its own place). Inside a mask, the
    folders leading there are made first, passable but not listable by all:
    bwrap would make them 0700, which the task's uid could not pass through."""
    at = at or path
    argv: list[str] = []
    mask = next((m for m in masks if _inside(at, m)), None)
    if mask is not None:
        parts = Path(at).relative_to(mask).parts
        for depth in range(1, len(parts)):
            argv += ["--perms", "0711", "--dir", os.path.join(mask, *parts[:depth])]
    return argv + [how, path, at]
