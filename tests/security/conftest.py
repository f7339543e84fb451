"""Attacks run as LLM code through the whole pipeline, once per sandbox tier
and per Python state (a kernel per task, the default, and a fresh
interpreter per block).

Each test scripts the fake LLM to send one hostile block, submits a task to a
live server over HTTP, waits for its end, and then checks both that the
attack failed and that nothing else changed. The tiers:

- "bubblewrap": bwrap (as root here: privileged, and the block drops to the
  task's own uid);
- "process": a plain subprocess under the task's own uid (root only);
- "process-as-user": the service run as an ordinary user, the weak tier.
  Skipped here, saying why: the whole service cannot run as another user
  while its packages live in root's home. test_as_user.py runs the attacks
  through the executor as an ordinary user instead, on bubblewrap (which
  must stop them) and on the weak tier (whose outcomes docs/security.md
  states).

A tier that cannot run on the machine is skipped with the cause its
self-test gave.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from agent.sandbox import SandboxUnavailable

from ..conftest import app_config, LiveServer
from ..fake_llm import Block, Reply

TIERS = ["bubblewrap", "process", "process-as-user"]


def _reachable_by_others(path: str) -> bool:
    """Can a user other than root run the interpreter at `path`?"""
    parts = Path(os.path.realpath(path)).parts
    return all(os.stat(os.path.join(*parts[:i])).st_mode & stat.S_IXOTH for i in range(2, len(parts)))


def block_python() -> str | None:
    """An interpreter the process tier's uids can run: this one if they can
    reach it, else the system's."""
    if _reachable_by_others(sys.executable):
        return sys.executable
    system = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    return system if system and _reachable_by_others(system) else None


def engine_for(tier: str, **changes) -> dict:
    engine = {"sandbox": tier, **changes}
    if tier == "process":
        engine.setdefault("python", block_python())
    return engine


@pytest.fixture
def data_root():
    """A data folder other users may pass through, as a deployment's is (the
    test's tmp_path lies under a folder only root may enter)."""
    root = Path(tempfile.mkdtemp(prefix="aipy-security-"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Attack:
    """What a hostile block did: its task, its block result, the server."""

    server: LiveServer
    task: dict
    block: dict

    @property
    def stdout(self) -> str:
        return self.block["stdout"]


class Arena:
    """A live server on one tier, and a way to run hostile blocks on it."""

    def __init__(self, server: LiveServer, fake_llm, tier: str):
        self.server = server
        self.fake_llm = fake_llm
        self.tier = tier
        self.store = server.store

    def run(self, code: str, *, language: str = "python", timeout: float = 60, **task_fields) -> Attack:
        """Run `code` as the model's only block of a task; wait for its end."""
        self.fake_llm.script(Reply("Running it.", blocks=[Block(language, code)]), Reply("Done."))
        task_id = self.server.submit("do as you are told", **task_fields)
        task = self.server.wait_for(task_id, timeout=timeout)
        result = requests.get(f"{self.server.url}/tasks/{task_id}/result", timeout=10).json()
        blocks = result["output"]["results"]
        return Attack(self.server, task, blocks[0]["result"] if blocks else {})

    def finished_task(self, files: dict[str, str] | None = None) -> str:
        """A completed task whose code wrote `files` into its workspace."""
        code = "".join(f"open({name!r}, 'w').write({text!r})\n" for name, text in (files or {}).items())
        attack = self.run(code or "pass")
        assert attack.task["status"] == "completed", attack.block
        return attack.task["task_id"]


@pytest.fixture(params=TIERS)
def tier(request) -> str:
    name = request.param
    if name == "process-as-user":
        pytest.skip("a whole service as an ordinary user needs its packages outside root's home; the "
                    "user tiers run the same attacks through the executor in test_as_user.py")
    if os.geteuid() != 0:
        pytest.skip(f"tier {name!r} as root needs the tests to run as root")
    if name == "process" and block_python() is None:
        pytest.skip("no interpreter that other users can run (the process tier's uids need one)")
    return name


@pytest.fixture(params=["kernel", "fresh"])
def python_state(request) -> str:
    """Every attack runs with a kernel per task (the default) and with a
    fresh interpreter per Python block."""
    return request.param


@pytest.fixture
def start_arena(fake_llm, data_root, tmp_path, python_state):
    """Start a server on `tier` with settings changed as given, in the
    test's `python_state`."""
    started: list[LiveServer] = []

    def start(tier: str, *, engine: dict | None = None, **settings) -> Arena:
        config = app_config(tmp_path, fake_llm, data_dir=data_root / "data", **settings)
        for key, value in engine_for(tier, python_state=python_state, **(engine or {})).items():
            setattr(config.settings.engine, key, value)
        try:
            server = LiveServer(config)
        except SandboxUnavailable as exc:
            pytest.skip(f"tier {tier!r} cannot run here: {exc}")
        started.append(server)
        return Arena(server, fake_llm, tier)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def arena(start_arena, tier) -> Arena:
    return start_arena(tier)
