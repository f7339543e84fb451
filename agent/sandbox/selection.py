"""Choosing the tier at start: the strongest one that really runs a block.

A tier is accepted only after a self-test runs a real Python block through it
(the same path every block takes: lease, bootstrap, identity drop, limits).
"auto" tries bubblewrap, then process; a forced tier that fails, or "auto"
with nothing left, fails the start with every cause named, so a broken
sandbox is found by the operator at deploy time, not by a task.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from .bubblewrap import find_bwrap, _unsearchable_ancestor
from .identity import DEFAULT_LEASE_DIR, UidPool
from .sandbox import Sandbox

log = logging.getLogger("aipy.sandbox")

#: `probe(sandbox)`: None when a real block ran through it, else why not.
Probe = Callable[[Sandbox], "str | None"]


class SandboxUnavailable(RuntimeError):
    """No tier that the settings allow can run a block here."""


def interpreter_roots(python: str) -> list[str]:
    """The folders `python` needs to run: its prefixes (a venv's and its
    base's) and the folder its real executable lives in."""
    # Compared as given, not resolved: a venv's python links to its base's
    # binary, yet has a prefix of its own.
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        found = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        code = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]))"
        # Not -S: site.py is what points sys.prefix at a venv.
        done = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise SandboxUnavailable(f"engine.python {python!r} does not run: {done.stderr.strip()[-300:]}")
        found = json.loads(done.stdout)
    found.append(os.path.dirname(os.path.realpath(python)))
    return list(dict.fromkeys(os.path.realpath(p) for p in found))


def _hint(tier: str, python: str, problem: str, workspaces: Path | None) -> str:
    """`problem`, with the fix when the cause is a folder the process tier's
    uid cannot pass through (the bubblewrap tier binds such paths back)."""
    if tier != "process" or os.geteuid() != 0:
        return problem
    blocked = _unsearchable_ancestor(os.path.realpath(python))
    if blocked:
        return (f"{problem} ({blocked} is not searchable by other users, so the sandbox uid cannot run "
                f"{python}; set engine.python to an interpreter all users can run, e.g. /usr/bin/python3, "
                "or use the bubblewrap tier)")
    blocked = _unsearchable_ancestor(os.path.realpath(workspaces)) if workspaces else None
    if blocked:
        return (f"{problem} ({blocked} is not searchable by other users, so the sandbox uid cannot reach "
                f"the workspaces in {workspaces}; chmod o+x the folders above it, move the data folder, "
                "or use the bubblewrap tier)")
    return problem


def choose_sandbox(tier: str, *, network: str, python: str | None, uids: range, probe: Probe,
                   lease_dir: Path = DEFAULT_LEASE_DIR, workspaces: Path | None = None) -> Sandbox:
    """The sandbox to use; SandboxUnavailable naming every cause when none
    of the tiers that `tier` allows passes the self-test. `workspaces` is
    where task workspaces live (named in the causes)."""
    python = python or sys.executable
    roots = interpreter_roots(python)
    pool = None
    if os.geteuid() == 0:
        pool = UidPool(uids, lease_dir)
        pool.sweep_unleased()  # what a killed worker left, before anything runs
    candidates = ["bubblewrap", "process"] if tier == "auto" else [tier]
    causes = []
    for name in candidates:
        if name == "process" and network == "none":
            causes.append("process: engine.network 'none' needs the bubblewrap tier "
                          "(install bubblewrap, or set engine.network to 'full')")
            continue
        bwrap = find_bwrap() if name == "bubblewrap" else None
        if name == "bubblewrap" and bwrap is None:
            causes.append("bubblewrap: the bwrap program is not installed (apt-get install bubblewrap)")
            continue
        sandbox = Sandbox(name, python, network=network, bwrap=bwrap, pool=pool, interpreter_roots=roots)
        problem = probe(sandbox)
        if problem is None:
            if sandbox.weak:
                log.warning("Sandbox tier 'process' as a non-root user: code runs as the server's own user "
                            "and can reach everything it can. Install bubblewrap or run as root.")
            return sandbox
        causes.append(f"{name}: {_hint(name, python, problem, workspaces)}")
    raise SandboxUnavailable("no sandbox tier can run code blocks here (engine.sandbox="
                             f"{tier!r}): " + "; ".join(causes))
