"""The uid leases (agent/sandbox/identity.py): a uid given back swept is
marked so, and its next holder trusts the mark instead of scanning every
process again; a holder that dies leaves no mark, and the next holder
sweeps whatever the dead one's task left running."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from agent.sandbox import UidPool
from agent.sandbox import identity
from agent.sandbox.family import alone_in_namespace

from ..procs import gone_within, new_marker
from .test_tiers import needs_root

UIDS = range(1_299_900, 1_299_902)  # outside the range other tests lease from


@pytest.fixture
def pool():
    with tempfile.TemporaryDirectory() as leases:
        yield UidPool(UIDS, Path(leases))


def sleeper(uid: int, marker: str) -> subprocess.Popen:
    """A process of `uid` that outlives whoever leased it (`marker` names it)."""
    return subprocess.Popen(["sh", "-c", f"exec -a {marker} sleep 60"], user=uid, group=uid, extra_groups=[],
                            start_new_session=True)


@needs_root
def test_a_holder_that_died_leaves_no_mark_and_the_next_holder_sweeps(pool):
    lease = pool.lease()
    marker = new_marker("left-by-a-dead-holder")
    orphan = sleeper(lease.uid, marker)
    try:
        lease.release()  # no clean mark: as when the holder dies
        again = [pool.lease() for _ in UIDS]  # the pool holds two uids: one of these is it
        assert gone_within(marker, 2.0), "the next holder did not sweep the uid"
        for taken in again:
            taken.release(clean=True)
    finally:
        orphan.kill()
        orphan.wait()


@needs_root
def test_a_uid_given_back_swept_is_leased_again_without_a_scan(pool, monkeypatch):
    first = pool.lease()
    identity.kill_all_of(first.uid)
    first.release(clean=True)
    scans = []
    monkeypatch.setattr(identity, "kill_all_of", lambda uid, spare=None: scans.append(uid) or 0)
    second = pool.lease()
    assert second.uid == first.uid and scans == []  # the one just given back, trusted
    second.release()
    third = pool.lease()
    assert scans == [third.uid]  # given back without the mark: swept
    third.release()


@needs_root
def test_a_processs_namespace_is_alone_only_with_its_init():
    # This test process shares the host's pid namespace with everything else.
    assert not alone_in_namespace(os.getpid(), os.getpid())
    assert not alone_in_namespace(2 ** 22 + 1, 2)  # no such process: cannot be told
