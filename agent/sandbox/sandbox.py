"""A chosen sandbox tier: how a block's command is wrapped, under which uid it
runs, and the per-task session that hands the workspace to that uid.

Tiers and what each enforces (docs/security.md has the full table):

| tier                | identity                        | processes          | files               | network "none" |
| ------------------- | ------------------------------- | ------------------ | ------------------- | -------------- |
| bubblewrap, as root | a leased uid, no capabilities   | own pid namespace  | host read-only, service folders masked | yes |
| bubblewrap, as user | user namespace, no capabilities | own pid namespace  | same                | yes            |
| process, as root    | a leased uid, no capabilities   | swept by uid       | what any user may read; state tree 0700 | no (refused) |
| process, as user    | the server's own (weak)         | process group only | what the server may | no (refused)   |
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import slots
from .bootstrap import bootstrap_argv
from .bubblewrap import bubblewrap_argv
from .family import alone_in_namespace, kill_descendants, kill_group
from .identity import UidLease, UidPool, kill_all_of, remove_files_of

log = logging.getLogger("aipy.sandbox")

TIERS = ("bubblewrap", "process")


@dataclass
class Sandbox:
    """A tier ready to start blocks. `pool` is set when the service is root:
    each task then runs as a uid of its own."""

    tier: str
    python: str
    network: str = "full"
    bwrap: str | None = None
    pool: UidPool | None = None
    interpreter_roots: list[str] = field(default_factory=list)

    @property
    def weak(self) -> bool:
        """True for the one tier that runs code as the server's own user."""
        return self.tier == "process" and self.pool is None

    def describe(self) -> dict:
        """What /health shows: the tier and what it rests on."""
        if self.pool is not None:
            identity = f"one uid per task from {self.pool.describe()}, no capabilities"
        elif self.tier == "bubblewrap":
            identity = "user namespace, no capabilities"
        else:
            identity = "the server's own user (weak: run the service as root or install bubblewrap)"
        return {"tier": self.tier, "identity": identity, "network": self.network, "weak": self.weak}

    @contextmanager
    def session(self, workspace: Path) -> Iterator["Session"]:
        """One task's time in the sandbox. Its first block leases a uid (when
        root) and hands it the workspace; leaving kills all the task left
        and takes the workspace back. A task that runs no code costs nothing."""
        session = Session(self, Path(workspace))
        try:
            yield session
        finally:
            session.close()

    def command(self, *, mode: str, script: str, path0: str, limits: dict[str, int], workspace: Path,
                scratch: Path, hide: list[str], uid: int | None, ready_fd: int,
                tmp_bytes: int, control_fd: int | None = None, inside: Path | None = None
                ) -> tuple[list[str], int | None]:
        """The argv that starts a block (or, with mode "kernel", a task's
        Python kernel talking on `control_fd`), and the uid the spawn itself
        must switch to (the process tier as root), else None. `script` and
        `path0` are paths as the code sees them; the workspace is seen at
        `inside` (default: its own path)."""
        boot = dict(mode=mode, script=script, path0=path0, cwd=str(inside or workspace), limits=limits,
                    ready_fd=ready_fd, control_fd=control_fd)
        if self.tier == "bubblewrap":
            wrapper = bubblewrap_argv(self.bwrap or "bwrap", workspace=workspace, scratch=scratch, hide=hide,
                                      interpreter_roots=self.interpreter_roots, network=self.network,
                                      as_root=self.pool is not None, tmp_bytes=tmp_bytes, inside=inside)
            return wrapper + bootstrap_argv(self.python, uid=uid, **boot), None
        return bootstrap_argv(self.python, uid=None, **boot), uid


class Session:
    """Holds a task's uid lease and its workspace while the task runs."""

    def __init__(self, sandbox: Sandbox, workspace: Path):
        self.sandbox = sandbox
        self.workspace = workspace
        #: Where the task's code sees its workspace: the same path, unless
        #: the task took over a warm kernel (see adopt).
        self.inside = workspace
        self.lease: UidLease | None = None
        self.opened = False
        #: The workspace's path and its real path when `inside` differs from
        #: them: the paths `seen` moves (set once, by adopt).
        self._moved: tuple[Path, ...] = ()
        #: The lock on the slot left as the mount point of the workspace (adopt).
        self._slot: tuple[Path, int] | None = None
        #: True from a sweep that spared nothing until something of the task
        #: starts again (`starting`): the uid then runs nothing, and leaving
        #: need not sweep once more.
        self._swept = False

    @property
    def uid(self) -> int | None:
        return self.lease.uid if self.lease is not None else None

    def give(self, path: Path) -> None:
        """Make `path` (a folder of this task) the task uid's, mode 0700."""
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)
        os.chmod(path, 0o700)

    def open(self) -> None:
        """Lease the uid and hand over the workspace, once, before the first
        block. Raises NoFreeUid or OSError."""
        if self.opened:
            return
        if self.sandbox.pool is not None:
            self.lease = self.sandbox.pool.lease()
        self.opened = True
        # Not parents=True: a task deleted just before it ran must not get
        # its workspace made again, where no cleanup would find it.
        self.workspace.mkdir(exist_ok=True)
        self.give(self.workspace)
        self._give_contents()

    def adopt(self, warm: Session) -> None:
        """Open this session with `warm`'s lease and folder: a session opened
        on a slot (slots.py) for a kernel started before its task was known.
        The slot becomes this task's workspace, with the files the service
        put there before (uploads, a previous task's files) moved into it;
        the task's code keeps seeing it where the kernel first saw it.
        Raises OSError (nothing changed) when the workspace is gone."""
        if self.opened:
            raise RuntimeError("the session is open already")
        slot = warm.workspace
        names = os.listdir(self.workspace)
        for name in names:
            os.rename(self.workspace / name, slot / name)
        try:
            slots.exchange(slot, self.workspace)
        except OSError:
            for name in names:
                os.rename(slot / name, self.workspace / name)
            raise
        # The old workspace folder, now empty at the slot's path, stays as
        # the mount point of later blocks (bubblewrap binds the workspace
        # there); locked, so no starting worker sweeps it away meanwhile.
        try:
            self._slot = (slot, slots.keep(slot))
        except OSError as exc:  # the workspace is the task's now: go on without the mark
            log.warning("could not keep %s as the workspace's mount point: %s", slot, exc)
        self.lease, warm.lease = warm.lease, None
        self.opened = warm.opened = True
        if self.sandbox.tier == "bubblewrap":
            self.inside = warm.inside
            self._moved = (self.workspace, self.workspace.resolve())
        self.give(self.workspace)
        self._give_contents()

    def seen(self, path: Path) -> Path:
        """`path` as the task's code sees it (a path in the workspace moves
        with `inside`)."""
        for root in self._moved:
            if path == root or root in path.parents:
                return self.inside / path.relative_to(root)
        return path

    def _give_contents(self) -> None:
        """Files the service put in the workspace before the first block
        (uploads, a previous task's files) become the task uid's too, so its
        code can change them. Links are changed, never followed: before the
        first block only the service has written here."""
        if self.uid is None:
            return
        own = os.geteuid()
        for folder, dirs, files in os.walk(self.workspace):
            for name in dirs + files:
                path = os.path.join(folder, name)
                if os.lstat(path).st_uid == own:
                    os.lchown(path, self.uid, self.uid)

    def end_block(self, spare: int | None = None, *, emptied: bool = False) -> None:
        """Kill whatever the block left behind, escaped process groups too;
        `spare` is the task's kernel, if one waits for its next block.
        `emptied`: the block's bubblewrap sandbox is known to hold nothing
        any more (Kernel._sandbox_emptied), so no scan is needed."""
        if self.uid is not None:
            if not emptied:
                kill_all_of(self.uid, spare)
            self._swept = spare is None

    def starting(self) -> None:
        """Something of the task is about to start under its uid."""
        self._swept = False

    def end_kernel_block(self, kernel: int, parent: int, inner: int | None = None) -> None:
        """Kill whatever a kernel's block left behind, sparing the kernel
        (pid `kernel`, child of `parent`, `inner` in its own pid namespace);
        see family.py for each tier."""
        if self.uid is not None:
            # Under bubblewrap everything of the task lives in the kernel's
            # pid namespace: when it holds nothing else, there is nothing to
            # sweep for (a scan of every process on the host, per block).
            if not (self.sandbox.tier == "bubblewrap" and inner is not None and alone_in_namespace(kernel, inner)):
                kill_all_of(self.uid, kernel)
        elif self.sandbox.tier == "bubblewrap":
            kill_descendants(parent, kernel)  # the parent is the sandbox's init
        else:
            kill_group(kernel, kernel)

    def close(self) -> None:
        if self._slot is not None:
            slot, fd = self._slot
            shutil.rmtree(slot, ignore_errors=True)
            os.close(fd)
            self._slot = None
        if self.lease is None:
            return
        swept = False
        try:
            if not self._swept:
                kill_all_of(self.lease.uid)
            # Under bubblewrap the host's shared temp folders are masked
            # (/tmp, /var/tmp) or the sandbox's own (/dev/shm in its /dev):
            # the task's uid cannot have left anything in them.
            if self.sandbox.tier != "bubblewrap":
                remove_files_of(self.lease.uid)
            swept = True
            # Taking the top folder back seals the workspace: the files in it
            # stay the task uid's, but that uid can no longer reach them, and
            # the next task to lease the uid finds nothing of this one.
            try:
                os.chown(self.workspace, os.geteuid(), os.getegid())
                os.chmod(self.workspace, 0o700)
            except FileNotFoundError:
                pass
        finally:
            self.lease.release(clean=swept)
            self.lease = None
