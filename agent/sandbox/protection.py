"""Keeping the server's own memory out of reach of the code it runs."""

from __future__ import annotations

import ctypes

_PR_SET_DUMPABLE = 4


def protect_from_children() -> None:
    """Make this process non-dumpable, so code it runs as the same user
    cannot read its memory or /proc/<pid>/environ (where the LLM keys are).
    Linux only, best effort; it does not bind root, which is why a root
    service runs code under uids of their own (see identity.py)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass
