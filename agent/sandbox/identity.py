"""Who a block runs as when the service is root: one unprivileged uid per
running task, leased from a configured range, like systemd's DynamicUser.

Why a uid of its own: a uid is the boundary the kernel enforces everywhere at
once. Code running as uid X cannot signal the server or another task, cannot
read their /proc entries (environment, memory), cannot write the
interpreter, the venv, the config or the task state, and the per-user
process limit (RLIMIT_NPROC) becomes a per-task limit. And "every process of
uid X" is an exact description of everything a task started, including
processes that called setsid() or double-forked, so killing them all is how a
block's end, a task's end and a crashed worker are cleaned up.

Leases are exclusive flocks on one file per uid in a host-wide folder
(default /run/aipython-agent/uids), so any number of worker processes, and
several services on one host, never hand the same uid to two tasks. A lease
dies with the process that held it, which is why a uid is swept (every
process of it killed) each time it is leased: whatever a dead worker left
running under it goes before new code runs.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import random
import shutil
import signal
import threading
from pathlib import Path
from typing import Callable

log = logging.getLogger("aipy.sandbox")

DEFAULT_LEASE_DIR = Path("/run/aipython-agent/uids")

#: How many rounds of "find and kill" a sweep makes before it gives up; each
#: round kills every process found, and a killed process can no longer fork,
#: so two rounds suffice unless something forks at the very moment of a scan.
SWEEP_ROUNDS = 100


class NoFreeUid(RuntimeError):
    """Every uid of the range is leased: more tasks run than uids exist."""


#: What a lease file holds while nobody holds the uid and its last holder
#: swept it: a sweep is a scan of every process, and a task costs two.
_CLEAN = b"swept\n"


class UidLease:
    """One leased uid; `release()` (or leaving the `with`) gives it back."""

    def __init__(self, uid: int, fd: int, on_clean_release: Callable[[int], None] = lambda uid: None):
        self.uid = uid
        self._fd: int | None = fd
        self._on_clean_release = on_clean_release

    def release(self, clean: bool = False) -> None:
        """Give the uid back; `clean`: the holder has just swept it (no
        process of it runs, none of its temp files is left), which the next
        holder may then trust instead of sweeping again (see UidPool.lease)."""
        if self._fd is not None:
            marked = False
            if clean:
                try:
                    marked = os.pwrite(self._fd, _CLEAN, 0) == len(_CLEAN)
                except OSError:  # the next holder sweeps: it finds no mark
                    pass
            os.close(self._fd)  # closing the file releases the flock
            self._fd = None
            if marked:
                self._on_clean_release(self.uid)

    def __enter__(self) -> "UidLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class UidPool:
    """Leases uids from `uids` (a range), one per running task."""

    def __init__(self, uids: range, lock_dir: Path = DEFAULT_LEASE_DIR):
        if not uids:
            raise ValueError("the sandbox uid range is empty")
        self.uids = uids
        self.lock_dir = Path(lock_dir)
        self.lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.lock_dir, 0o700)
        #: Uids this process gave back swept, newest last: leased again
        #: first, they need no sweep (and their lease files exist).
        self._clean: list[int] = []
        self._clean_lock = threading.Lock()

    def describe(self) -> str:
        return f"{self.uids.start}-{self.uids.stop - 1}"

    def _try_lock(self, uid: int) -> int | None:
        fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def lease(self) -> UidLease:
        """A free uid, swept clean. Starts at a random place so that
        processes starting together do not all contend for the first uid."""
        offset = random.randrange(len(self.uids))
        around = (self.uids[(offset + i) % len(self.uids)] for i in range(len(self.uids)))
        for uid in itertools.chain(self._recently_clean(), around):
            fd = self._try_lock(uid)
            if fd is not None:
                # A holder that died while its task ran left no mark, and
                # maybe processes (the process tier's outlive their worker).
                if os.pread(fd, len(_CLEAN), 0) != _CLEAN:
                    kill_all_of(uid)
                os.ftruncate(fd, 0)
                with self._clean_lock:
                    if uid in self._clean:
                        self._clean.remove(uid)
                return UidLease(uid, fd, self._released_clean)
        raise NoFreeUid(f"all {len(self.uids)} sandbox uids ({self.describe()}) are in use; "
                        "raise engine.sandbox_uid_count or run fewer tasks at once")

    def _recently_clean(self) -> list[int]:
        with self._clean_lock:
            return self._clean[::-1]

    def _released_clean(self, uid: int) -> None:
        with self._clean_lock:
            if uid not in self._clean:
                self._clean.append(uid)
            del self._clean[:-64]  # the newest are enough

    def sweep_unleased(self) -> int:
        """Kill the processes, and remove the temp files, of every uid in the
        range that no live process holds: what a killed worker's tasks left.
        Run at start, before any task. Returns how many uids had processes."""
        found = 0
        for uid in sorted(uids_with_processes(self.uids) | uids_with_temp_files(self.uids)):
            fd = self._try_lock(uid)
            if fd is None:
                continue  # a live worker's task owns it
            try:
                killed = kill_all_of(uid)
                remove_files_of(uid)
            finally:
                os.close(fd)
            if killed:
                found += 1
                log.warning("Killed %d leftover process(es) of sandbox uid %d (a worker died while its "
                            "task ran)", killed, uid)
        return found


def _real_uid(pid: str) -> int | None:
    """The real uid of process `pid`, or None when it is gone or a zombie.

    /proc/<pid>/status is read rather than the folder's owner: a process that
    made itself non-dumpable shows its /proc folder as owned by root."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            text = fh.read()
    except OSError:
        return None
    # Found by position, not by splitting the whole file: a sweep reads
    # every process's status, and a task's end waits for it.
    state = text.find(b"\nState:")
    if state >= 0 and text[state + 7:state + 9].strip()[:1] == b"Z":
        return None
    at = text.find(b"\nUid:")
    if at < 0:
        return None
    try:
        return int(text[at + 5:text.index(b"\t", at + 6)])
    except ValueError:
        return None


def _pids() -> list[str]:
    return [name for name in os.listdir("/proc") if name.isdigit()]


def uids_with_processes(uids: range) -> set[int]:
    """Which uids of `uids` own a live process now."""
    found = set()
    for pid in _pids():
        uid = _real_uid(pid)
        if uid is not None and uid in uids:
            found.add(uid)
    return found


def kill_all_of(uid: int, spare: int | None = None) -> int:
    """SIGKILL every process whose real uid is `uid` (but `spare`, a task's
    kernel between its blocks), until none is left; returns how many were
    killed. Only root may do this for another uid.

    A scan of /proc from here rather than kill(-1) as that uid: a task that
    hit its process limit would make the helper's own exec fail."""
    killed = 0
    for _ in range(SWEEP_ROUNDS):
        round_kills = 0
        for pid in _pids():
            if _real_uid(pid) == uid and int(pid) != spare:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                    round_kills += 1
                except ProcessLookupError:
                    pass
        if not round_kills:
            return killed
        killed += round_kills
    log.error("Sandbox uid %d still had processes after %d sweeps", uid, SWEEP_ROUNDS)
    return killed


#: Folders every user may write to, where a task's code can leave files that
#: outlive it; its uid's entries there go when its lease ends, before the
#: uid can be leased to another task.
SHARED_TEMP = ("/tmp", "/var/tmp", "/dev/shm")


def uids_with_temp_files(uids: range, folders: tuple[str, ...] = SHARED_TEMP) -> set[int]:
    """Which uids of `uids` own an entry at the top of the shared temp folders."""
    found = set()
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        owner = entry.stat(follow_symlinks=False).st_uid
                    except OSError:
                        continue
                    if owner in uids:
                        found.add(owner)
        except OSError:
            continue
    return found


def remove_files_of(uid: int, folders: tuple[str, ...] = SHARED_TEMP) -> int:
    """Delete what `uid` left at the top of the shared temp folders (a
    folder of its own, with all in it); returns how many entries went."""
    removed = 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
            except OSError:
                continue
    return removed
