"""What each tier promises beyond the attacks: bubblewrap's mounts and
network, an interpreter anywhere, honest failure when a block cannot start,
the start-up choice, and nothing outliving a killed worker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import venv
from pathlib import Path

import pytest
import requests

from agent import EngineSettings, ExecLimits, Executor
from agent.sandbox import Sandbox, SandboxUnavailable, UidPool, choose_sandbox
from agent.sandbox.identity import uids_with_processes

from ..conftest import make_engine
from ..fake_llm import Block, Reply
from ..procs import gone_within, new_marker, running
from .conftest import block_python

ROOT = Path(__file__).resolve().parents[2]


def bwrap_missing() -> str | None:
    if shutil.which("bwrap") is None:
        return "bwrap is not installed (apt-get install bubblewrap)"
    try:
        Executor(ExecLimits.from_settings(EngineSettings(sandbox="bubblewrap")))
    except SandboxUnavailable as exc:
        return f"the bubblewrap tier cannot run here: {exc}"
    return None


needs_bwrap = pytest.mark.skipif(bwrap_missing() is not None, reason=str(bwrap_missing()))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the uid tiers need the tests to run as root")


@needs_bwrap
def test_bubblewrap_as_root_cannot_unmount_or_remount(start_arena, fake_llm):
    arena = start_arena("bubblewrap")
    code = textwrap.dedent(f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        MS_REMOUNT, MS_BIND = 32, 4096
        print('umount /proc', libc.umount2(b'/proc', 2), ctypes.get_errno())
        print('remount /', libc.mount(None, b'/', None, MS_REMOUNT | MS_BIND, None), ctypes.get_errno())
        print('mount tmpfs', libc.mount(b'x', b'/mnt', b'tmpfs', 0, None), ctypes.get_errno())
        print('host proc', len([p for p in os.listdir('/proc') if p.isdigit()]) < 10)
        try:
            open({str(arena.store.tasks_dir / 'planted')!r}, 'w')
            print('WROTE')
        except OSError as exc:
            print('data folder', type(exc).__name__)
    """)
    attack = arena.run(code)
    lines = attack.stdout.splitlines()
    assert lines[:3] == ["umount /proc -1 1", "remount / -1 1", "mount tmpfs -1 1"], attack.block  # EPERM
    assert lines[3] == "host proc True" and lines[4].startswith("data folder"), attack.block
    assert not (arena.store.tasks_dir / "planted").exists()


@needs_bwrap
def test_network_none_reaches_nothing_not_even_loopback(start_arena, fake_llm):
    arena = start_arena("bubblewrap", engine={"network": "none"})
    host, port = arena.server.url.rsplit("/", 1)[1].split(":")
    code = textwrap.dedent(f"""
        import socket
        for target in (({host!r}, {port}), ('127.0.0.1', {fake_llm.port})):
            try:
                socket.create_connection(target, timeout=3).close()
                print('REACHED', target)
            except OSError as exc:
                print('blocked', type(exc).__name__)
    """)
    attack = arena.run(code)
    assert attack.stdout.splitlines() == ["blocked ConnectionRefusedError"] * 2, attack.block
    assert requests.get(f"{arena.server.url}/health", timeout=10).json()["sandbox"]["network"] == "none"


def test_network_none_refuses_the_process_tier(tmp_path):
    with pytest.raises(SandboxUnavailable, match="needs the bubblewrap tier"):
        choose_sandbox("process", network="none", python=None, uids=range(1_300_000, 1_300_010),
                       probe=lambda box: None, lease_dir=tmp_path / "leases")


@needs_bwrap
def test_an_interpreter_under_tmp_runs_in_bubblewrap(start_arena, tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="aipy-venv-", dir="/tmp"))
    try:
        venv.create(folder, with_pip=False, symlinks=True)
        arena = start_arena("bubblewrap", engine={"python": str(folder / "bin" / "python")})
        attack = arena.run("import sys\nprint(sys.prefix)\n")
        assert attack.block["status"] == "success" and attack.stdout == f"{folder}\n", attack.block
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_block_the_sandbox_cannot_start_fails_the_task(fake_llm, recorder, tmp_path):
    broken = Sandbox("process", "/nonexistent/python3")
    engine = make_engine(fake_llm, "openai")
    engine.executor = Executor(ExecLimits.from_settings(EngineSettings(exec_timeout_s=20)), broken)
    fake_llm.script(Reply("Try.", blocks=[Block("python", "print(1)")]), Reply("All good!"))
    outcome = engine.run("go", tmp_path / "ws", recorder)
    assert outcome.status == "error" and "could not start a python block" in outcome.error
    assert recorder.last("exec_result")["result"]["status"] == "error"
    assert len(fake_llm.requests) == 1  # the model was not asked to carry on


def test_a_forced_tier_that_cannot_run_fails_the_start_naming_the_cause(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name, **kw: None if name == "bwrap" else "/bin/" + name)
    with pytest.raises(SandboxUnavailable, match="bwrap program is not installed"):
        choose_sandbox("bubblewrap", network="full", python=None, uids=range(1_300_000, 1_300_010),
                       probe=lambda box: None, lease_dir=tmp_path / "leases")


def test_auto_falls_back_to_the_next_tier_that_passes_its_self_test(tmp_path):
    tried = []

    def probe(box):
        tried.append(box.tier)
        return "cannot make namespaces" if box.tier == "bubblewrap" else None

    chosen = choose_sandbox("auto", network="full", python=None, uids=range(1_300_000, 1_300_010),
                            probe=probe, lease_dir=tmp_path / "leases")
    assert chosen.tier == "process"
    assert tried[-1] == "process" and (shutil.which("bwrap") is None or tried[0] == "bubblewrap")


@needs_root
@pytest.mark.parametrize("tier", ["bubblewrap", "process"])
def test_a_killed_worker_leaves_no_code_running(tier, tmp_path, data_root):
    """SIGKILL the process running a block: its code dies at once (bubblewrap:
    with its parent) or, at the latest, when the next worker starts and sweeps
    the uids no live worker holds -- before it runs anything."""
    if tier == "bubblewrap" and bwrap_missing():
        pytest.skip(bwrap_missing())
    python = block_python() if tier == "process" else None
    if tier == "process" and python is None:
        pytest.skip("no interpreter that other users can run")
    uids, leases = range(1_310_000, 1_310_004), tmp_path / "leases"
    marker = new_marker("orphan")
    worker = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from agent import EngineSettings, ExecLimits, Executor
        from agent.executor import self_test
        from agent.sandbox import choose_sandbox
        box = choose_sandbox({tier!r}, network="full", python={python!r}, uids=range({uids.start}, {uids.stop}),
                             probe=self_test, lease_dir=Path({str(leases)!r}))
        Executor(ExecLimits.from_settings(EngineSettings(exec_timeout_s=60)), box).run(
            "bash", "(setsid bash -c 'exec -a {marker} sleep 60' &); exec -a {marker} sleep 60",
            Path({str(data_root / 'ws')!r}))
    """)
    process = subprocess.Popen([sys.executable, "-c", worker])
    try:
        deadline = time.monotonic() + 30
        while not running(marker):
            assert time.monotonic() < deadline and process.poll() is None, "the block never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)  # the worker dies mid-block
        process.wait()
        if tier == "bubblewrap":
            assert gone_within(marker, 2.0), "the block outlived its worker"
        else:
            assert uids_with_processes(uids), "expected the orphan to wait for the next start"
            UidPool(uids, leases).sweep_unleased()  # what the next worker does first
            assert gone_within(marker, 2.0)
    finally:
        process.kill()
        process.wait()
        UidPool(uids, leases).sweep_unleased()  # and the scratch folder the killed worker left
