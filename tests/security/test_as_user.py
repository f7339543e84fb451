"""The tiers a service gets when it does not run as root: bubblewrap in a user
namespace, and plain `process`, the weak tier.

The tests run the real executor as an ordinary uid (not root, no passwd entry
needed) in a process that plays the server: it holds a secret in its
environment, is non-dumpable like a worker, and owns a task state folder the
code must not reach. Each attack runs as a block through that executor.
Bubblewrap must stop every one; the weak tier's outcomes are asserted as
docs/security.md states them, so the table stays true.

The test interpreter lives under root's home, which other users cannot enter,
so the runner uses the system's Python of the same version, with a copy of
the few packages the executor imports made readable for the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from ..polling import wait_until
from ..procs import gone_within, kill_marked, new_marker, processes_of

ROOT = Path(__file__).resolve().parents[2]
USER = 1_399_000  # outside the default sandbox range; no passwd entry needed
PACKAGES = ("pydantic", "pydantic_core", "typing_extensions", "annotated_types", "typing_inspection")

#: The executor as a worker uses it. The `agent` and `config` packages are
#: entered without their __init__ (which import the LLM SDKs and settings
#: loader, not copied here): only the sandbox, the executor and the models run.
RUNNER = """\
import json, os, sys, types
from pathlib import Path
for package in ("agent", "config"):
    module = types.ModuleType(package)
    module.__path__ = [os.path.join(os.environ["AIPY_ROOT"], package)]
    sys.modules[package] = module
from agent.executor import ExecLimits, Executor
from agent.sandbox import protect_from_children
from config.models import EngineSettings
protect_from_children()
tier, data, blocks = sys.argv[1], Path(sys.argv[2]), json.loads(sys.stdin.read())
limits = ExecLimits.from_settings(EngineSettings(sandbox=tier, exec_timeout_s=30, sandbox_hide=[str(data)],
                                                 python=sys.executable, network=os.environ.get("NETWORK", "full"),
                                                 python_state=os.environ["PYTHON_STATE"]))
executor = Executor(limits)
with executor.session(data / "workspaces" / "task") as session:
    results = [session.run("python", code) for code in blocks]
print(json.dumps({"pid": os.getpid(), "tier": executor.sandbox.tier, "weak": executor.sandbox.weak,
                  "results": [{**r.to_dict(), "not_started": r.not_started} for r in results]}))
"""


def system_python() -> str | None:
    """/usr/bin/python3 when it is this interpreter's version (the copied
    pydantic_core is built for it)."""
    path = shutil.which("python3", path="/usr/bin")
    if path is None:
        return None
    version = subprocess.run([path, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    return path if version == str(sys.version_info[:2]) else None


@pytest.fixture(scope="module")
def user_home():
    if os.geteuid() != 0:
        pytest.skip("making another user's process needs root")
    if system_python() is None:
        pytest.skip(f"no system Python {sys.version_info.major}.{sys.version_info.minor} in /usr/bin "
                    "for a non-root user to run")
    home = Path(tempfile.mkdtemp(prefix="aipy-as-user-"))
    os.chmod(home, 0o755)
    site = home / "site"
    site.mkdir()
    for name in PACKAGES:
        module = __import__(name)
        source = Path(module.__file__)
        if source.name == "__init__.py":
            shutil.copytree(source.parent, site / name)
        else:
            shutil.copy2(source, site / source.name)
    subprocess.run(["chmod", "-R", "a+rX", str(site)], check=True)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def as_user(user_home, tmp_path, python_state):
    """Run a block as USER through the executor on a tier, in the test's
    python_state; returns its result and the path of a task state file the
    block must not change. `as_user.blocks` runs several blocks in one task
    session and returns their results."""
    data = Path(tempfile.mkdtemp(prefix="data-", dir=user_home))
    (data / "tasks" / "victim").mkdir(parents=True)
    (data / "tasks" / "victim" / "task.json").write_text('{"status": "completed"}')
    (data / "workspaces").mkdir()
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(data)], check=True)

    def blocks(tier: str, codes: list[str], *, network: str = "full", secret: str = "") -> tuple[dict, list[dict]]:
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(user_home / "site"), "AIPY_ROOT": str(ROOT),
               "NETWORK": network, "PYTHON_STATE": python_state,
               "AIPY_TEST_SERVER_SECRET": secret}
        done = subprocess.run([system_python(), "-c", RUNNER, tier, str(data)],
                              input=json.dumps([textwrap.dedent(code) for code in codes]),
                              capture_output=True, text=True, env=env, user=USER, group=USER, extra_groups=[],
                              cwd="/", timeout=120)
        if done.returncode != 0:
            if "SandboxUnavailable" in done.stderr:
                pytest.skip(f"tier {tier!r} cannot run as a user here: {done.stderr.strip().splitlines()[-1]}")
            raise AssertionError(done.stderr)
        answer = json.loads(done.stdout)
        assert answer["tier"] == tier and all(r["not_started"] is None for r in answer["results"]), answer
        return answer, answer.pop("results")

    def run(tier: str, code: str, **options) -> dict:
        answer, [result] = blocks(tier, [code], **options)
        return {**answer, **result}

    run.blocks = blocks
    run.state = data / "tasks" / "victim" / "task.json"
    run.home = user_home
    return run


@pytest.fixture(params=["bubblewrap", "process"])
def tier(request) -> str:
    return request.param


def test_the_state_tree_is_out_of_reach(as_user, tier):
    result = as_user(tier, f"""
        try:
            print(open({str(as_user.state)!r}).read())
            open({str(as_user.state)!r}, 'w').write('forged')
            print('WROTE')
        except OSError as exc:
            print('refused', type(exc).__name__)
    """)
    if tier == "bubblewrap":
        assert result["stdout"] == "refused FileNotFoundError\n", result
        assert as_user.state.read_text() == '{"status": "completed"}'
    else:  # the weak tier: the code is the server's own user
        assert result["stdout"].endswith("WROTE\n") and as_user.state.read_text() == "forged"


def test_the_servers_environment_stays_secret(as_user, tier):
    secret = f"sk-user-{os.getpid()}"
    result = as_user(tier, f"""
        import os
        seen = ''
        for pid in filter(str.isdigit, os.listdir('/proc')):
            try:
                seen += open(f'/proc/{{pid}}/environ', 'rb').read().decode('latin-1')
            except OSError:
                pass
        print({secret!r} in seen or {secret!r} in str(os.environ))
    """, secret=secret)
    assert result["stdout"] == "False\n", result  # the worker is non-dumpable on every tier


def test_signals_to_the_server_and_its_processes(as_user, tier):
    victim = subprocess.Popen(["sleep", "60"], user=USER, group=USER, extra_groups=[])
    try:
        result = as_user(tier, f"""
            import os, signal
            try:
                os.kill({victim.pid}, signal.SIGKILL)
                print('SIGNALLED')
            except OSError as exc:
                print('refused', type(exc).__name__)
        """)
        victim_alive = not died_within(victim, 2.0)
        if tier == "bubblewrap":
            assert result["stdout"] == "refused ProcessLookupError\n" and victim_alive, result
        else:
            assert result["stdout"] == "SIGNALLED\n" and not victim_alive, result
    finally:
        victim.kill()
        victim.wait()


def died_within(process: subprocess.Popen, seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def test_the_interpreters_packages_cannot_be_planted(as_user, tier):
    target = as_user.home / "site" / "aipy_planted.pth"
    os.chown(target.parent, USER, USER)  # the venv belongs to the service's user
    try:
        result = as_user(tier, f"""
            try:
                open({str(target)!r}, 'w').write('import os')
                print('WROTE')
            except OSError as exc:
                print('refused', type(exc).__name__)
        """)
    finally:
        os.chown(target.parent, 0, 0)
    if tier == "bubblewrap":
        assert result["stdout"].startswith("refused") and not target.exists(), result
    else:
        assert result["stdout"] == "WROTE\n" and target.exists()
        target.unlink()


def test_escaped_processes(as_user, tier):
    marker = new_marker("user-escape")
    result = as_user(tier, f"""
        import subprocess
        subprocess.Popen(['bash', '-c', 'exec -a {marker} sleep 60'], start_new_session=True)
        print('escaped')
    """)
    assert result["stdout"] == "escaped\n"
    if tier == "bubblewrap":
        assert gone_within(marker, 2.0)
    else:  # the weak tier kills the process group only; setsid() leaves it
        assert not gone_within(marker, 0.5)
        kill_marked(marker)


def test_bubblewrap_as_a_user_cannot_remount_or_reach_the_network(as_user):
    result = as_user("bubblewrap", """
        import ctypes, socket
        libc = ctypes.CDLL(None, use_errno=True)
        print(libc.umount2(b'/proc', 2), ctypes.get_errno(), libc.mount(None, b'/', None, 32 | 4096, None))
        try:
            socket.create_connection(('127.0.0.1', 22), timeout=2)
            print('REACHED')
        except OSError as exc:
            print('blocked', type(exc).__name__)
    """, network="none")
    lines = result["stdout"].splitlines()
    assert lines[0].split()[0] == "-1" and lines[0].split()[2] == "-1", result
    assert lines[1] == "blocked ConnectionRefusedError", result


@pytest.mark.parametrize("python_state", ["kernel"])
def test_a_kernels_blocks_end_what_they_start_while_the_kernel_lives_on(as_user, tier):
    plain, session = new_marker("user-plain"), new_marker("user-setsid")
    _, (first, second) = as_user.blocks(tier, [f"""
        import subprocess
        subprocess.Popen(['bash', '-c', 'exec -a {plain} sleep 60'])
        subprocess.Popen(['bash', '-c', 'exec -a {session} sleep 60'], start_new_session=True)
        x = 5
    """, f"""
        import os
        def seen(marker):
            for pid in filter(str.isdigit, os.listdir('/proc')):
                try:
                    if open(f'/proc/{{pid}}/cmdline', 'rb').read().startswith(marker.encode()):
                        return True
                except OSError:
                    pass
            return False
        print(x, seen({plain!r}), seen({session!r}))
    """])
    assert first["status"] == "success", first
    if tier == "bubblewrap":  # the whole pid namespace but the kernel
        assert second["stdout"] == "5 False False\n", second
    else:  # the weak tier kills the kernel's process group only; setsid() leaves it
        assert second["stdout"] == "5 False True\n", second
        kill_marked(session)
    wait_until(lambda: not processes_of(USER), timeout=2.0, what="no process of the user: the kernel ended")
