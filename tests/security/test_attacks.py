"""Each attack of the containment issue, run as LLM code through the real
pipeline on every tier (see conftest.py), must fail and change nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import requests

from ..fake_llm import Block, Reply
from ..procs import gone_within, new_marker, running


def digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` and a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def attempts(*targets: str) -> str:
    """Python that tries to write each target and prints what happened."""
    return "".join(
        "try:\n"
        f"    open({t!r}, 'a').write('forged')\n"
        f"    print('WROTE', {t!r})\n"
        "except OSError as exc:\n"
        "    print('refused', type(exc).__name__)\n" for t in targets)


def test_code_cannot_rewrite_another_tasks_state(arena):
    victim = arena.finished_task({"report.txt": "the victim's work"})
    state, index = arena.store.tasks_dir / victim, arena.store.tasks_dir / "index.jsonl"
    before, index_before = digest(state), index.read_bytes()
    attack = arena.run(attempts(str(state / "task.json"), str(state / "events.jsonl"), str(index)))
    assert "WROTE" not in attack.stdout and attack.stdout.count("refused") == 3, attack.block
    assert digest(state) == before
    assert index.read_bytes().startswith(index_before)  # the attacker's own task only added records
    assert requests.get(f"{arena.server.url}/tasks/{victim}", timeout=10).json()["status"] == "completed"


def test_code_cannot_forge_its_own_end(arena):
    marker = new_marker()
    code = (
        "import glob, json, os, subprocess, sys\n"
        f"subprocess.Popen(['bash', '-c', 'exec -a {marker} sleep 60'])\n"
        f"own = glob.glob({str(arena.store.tasks_dir)!r} + '/*/task.json')\n"
        "print('found', len(own))\n"
        f"for path in own + [{str(arena.store.tasks_dir)!r} + '/x/task.json']:\n"
        "    try:\n"
        "        open(path, 'w').write(json.dumps({'status': 'completed'}))\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', type(exc).__name__)\n"
    )
    attack = arena.run(code)
    assert "WROTE" not in attack.stdout, attack.block
    assert attack.stdout.startswith("found 0"), attack.block  # the state tree cannot even be listed
    # The API tells the truth, and the code the task started is gone with it.
    events = arena.store.read_events(attack.task["task_id"])
    assert [e["type"] for e in events].count("task_end") == 1
    assert gone_within(marker, 2.0)


def test_code_cannot_read_the_servers_environment(arena, monkeypatch):
    secret = f"sk-live-{os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv("AIPY_TEST_SERVER_SECRET", secret)  # the server is this process
    code = (
        "import os\n"
        "seen, refused = '', 0\n"
        f"for pid in [{os.getpid()}] + [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    for name in ('environ', 'mem', 'cmdline'):\n"
        "        try:\n"
        "            seen += open(f'/proc/{pid}/{name}', 'rb').read(1 << 20).decode('latin-1')\n"
        "        except OSError:\n"
        "            refused += 1\n"
        f"print('LEAKED' if {secret!r} in seen or {secret!r} in str(os.environ) else 'clean', refused > 0)\n"
    )
    attack = arena.run(code)
    assert attack.stdout.split()[0] == "clean", attack.block


def test_code_cannot_signal_the_server_or_another_tasks_processes(arena):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # root, like the server
    try:
        code = (
            "import os, signal\n"
            f"for pid in ({os.getpid()}, {victim.pid}):\n"
            "    for sig in (signal.SIGSTOP, signal.SIGKILL):\n"
            "        try:\n"
            "            os.kill(pid, sig)\n"
            "            print('SIGNALLED', pid)\n"
            "        except OSError as exc:\n"
            "            print('refused', type(exc).__name__)\n"
        )
        attack = arena.run(code)
        assert "SIGNALLED" not in attack.stdout and attack.stdout.count("refused") == 4, attack.block
        assert victim.poll() is None
        assert requests.get(f"{arena.server.url}/health", timeout=10).status_code == 200
    finally:
        victim.kill()
        victim.wait()


def test_code_cannot_plant_code_in_the_servers_interpreter(arena):
    targets = [os.path.join(sysconfig.get_paths()["purelib"], "aipy_planted.pth"),
               os.path.join(sysconfig.get_paths()["stdlib"], "aipy_planted.py"),
               os.path.join(os.path.dirname(os.path.realpath(sys.executable)), "aipy_planted")]
    attack = arena.run(attempts(*targets))
    assert "WROTE" not in attack.stdout, attack.block
    assert not any(os.path.exists(t) for t in targets)


def test_nothing_the_code_starts_outlives_its_block(arena):
    setsid, double = new_marker("setsid"), new_marker("double")
    code = (
        "import os, subprocess, time\n"
        f"subprocess.Popen(['bash', '-c', 'exec -a {setsid} sleep 60'], start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execvp('sleep', ['{double}', '60'])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "def seen():\n"
        "    found = set()\n"
        "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "        try:\n"
        "            found.add(open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')[0].decode())\n"
        "        except OSError:\n"
        "            pass\n"
        f"    return found >= {{'{setsid}', '{double}'}}\n"
        "deadline = time.monotonic() + 10\n"
        "while not seen() and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "print('escaped' if seen() else 'not started')\n"
    )
    attack = arena.run(code)
    assert attack.block["status"] == "success" and attack.stdout == "escaped\n", attack.block
    assert gone_within(setsid, 2.0) and gone_within(double, 2.0)


def test_one_task_cannot_use_up_anothers_processes(start_arena, tier, fake_llm):
    arena = start_arena(tier, engine={"max_processes": 40}, workers=2)
    hog = new_marker("hog")
    # The hog forks until its own limit refuses it, then holds every process.
    hog_code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as exc:\n"
        "    print('limit after', n, type(exc).__name__, flush=True)\n"
        f"os.execvp('sleep', ['{hog}', '60'])\n"
    )
    fake_llm.script(Reply("Hog.", blocks=[Block("python", hog_code)]), Reply("Done."), model="fake-openai")
    hog_id = arena.server.submit("hog", llm="fake")
    deadline = time.monotonic() + 30
    while not running(hog):
        assert time.monotonic() < deadline, "the hog never reached its limit"
        time.sleep(0.05)
    fake_llm.script(Reply("Work.", blocks=[Block("python", "import subprocess\nprint(sum(subprocess.run(['true']).returncode for _ in range(10)))")]),
                    Reply("Done."), model="fake-anthropic")
    worker_id = arena.server.submit("work", llm="fake-anthropic")
    arena.server.wait_for(worker_id, timeout=60)
    result = arena.store.result(worker_id)["output"]["results"][0]["result"]
    assert result["status"] == "success" and result["stdout"] == "0\n", result
    requests.delete(f"{arena.server.url}/tasks/{hog_id}", timeout=10)
    arena.server.wait_for(hog_id, timeout=30)
    assert gone_within(hog, 2.0)


def test_code_cannot_reach_another_workspace(arena):
    earlier = arena.finished_task({"secret.txt": "an earlier task's output"})
    folder = arena.store.workspace(earlier)
    code = (
        "import os\n"
        f"for path in ({str(folder / 'secret.txt')!r}, {str(folder)!r}, {str(folder.parent)!r}):\n"
        "    try:\n"
        "        print('READ', open(path).read() if os.path.isfile(path) else os.listdir(path))\n"
        "    except OSError as exc:\n"
        "        print('refused', type(exc).__name__)\n"
    )
    for _ in range(3):  # later tasks, whichever uid each is given
        attack = arena.run(code)
        assert "READ" not in attack.stdout and attack.stdout.count("refused") == 3, attack.block
    assert (folder / "secret.txt").read_text() == "an earlier task's output"


def test_code_planted_in_the_workspace_is_not_imported_by_later_blocks(arena, fake_llm):
    plant = (
        "import os, site, sys\n"
        "print(sys.flags.isolated, site.ENABLE_USER_SITE)\n"
        "user_site = site.getusersitepackages()\n"
        "os.makedirs(user_site, exist_ok=True)\n"
        "open(os.path.join(user_site, 'evil.pth'), 'w').write(\"import os; open('PWNED', 'w')\\n\")\n"
        "open('sitecustomize.py', 'w').write(\"open('PWNED', 'w')\\n\")\n"
    )
    check = "import os\nprint(os.path.exists('PWNED'))\n"
    fake_llm.script(Reply("Plant.", blocks=[Block("python", plant)]),
                    Reply("Check.", blocks=[Block("python", check)]), Reply("Done."))
    task_id = arena.server.submit("plant")
    arena.server.wait_for(task_id)
    plant_result, check_result = [r["result"] for r in arena.store.result(task_id)["output"]["results"]]
    assert plant_result["stdout"].split()[0] == "1", plant_result  # isolated mode
    assert check_result["stdout"] == "False\n", check_result


def test_the_workspace_and_open_files_are_bounded(start_arena, tier):
    arena = start_arena(tier, engine={"max_workspace_mb": 8, "max_open_files": 64})
    disk = arena.run("import time\nfor i in range(64):\n    open(f'f{i}', 'wb').write(b'0' * (1 << 20))\n"
                     "    time.sleep(0.05)\nprint('wrote it all')\n")
    assert disk.block["status"] == "error" and "workspace grew past its 8 MB limit" in disk.block["output"]
    assert "wrote it all" not in disk.stdout
    files = arena.run("fs = []\ntry:\n    while True: fs.append(open('/dev/null'))\n"
                      "except OSError as exc:\n    print(len(fs) < 64, exc.errno)\n")
    assert files.stdout == "True 24\n", files.block  # EMFILE


def test_health_names_the_tier_in_force(arena):
    sandbox = requests.get(f"{arena.server.url}/health", timeout=10).json()["sandbox"]
    assert sandbox["tier"] == arena.tier and sandbox["weak"] is False
    assert "uid per task" in sandbox["identity"]


def test_code_leaves_nothing_in_shared_temp_folders(arena):
    name = f"aipy-left-{os.getpid()}-{time.monotonic_ns()}"
    targets = [f"{folder}/{name}" for folder in ("/tmp", "/var/tmp", "/dev/shm")]
    attack = arena.run(attempts(*targets))
    assert attack.stdout.startswith(f"WROTE {targets[0]}"), attack.block  # /tmp is usable
    assert not any(os.path.exists(target) for target in targets)  # and nothing stays for the next task


def test_code_cannot_call_the_api(arena):
    earlier = arena.finished_task()
    code = (
        "import urllib.request, urllib.error\n"
        f"request = urllib.request.Request({arena.server.url + '/admin/cleanup?max_age_hours=0'!r}, method='POST')\n"
        "try:\n"
        "    print('ANSWERED', urllib.request.urlopen(request, timeout=5).status)\n"
        "except urllib.error.HTTPError as exc:\n"
        "    print('refused', exc.code)\n"
        "except OSError as exc:\n"
        "    print('refused', type(exc).__name__)\n"
    )
    attack = arena.run(code)
    assert attack.stdout == "refused 403\n", attack.block
    assert requests.get(f"{arena.server.url}/tasks/{earlier}", timeout=10).status_code == 200


def test_code_cannot_hold_the_api_down_with_idle_connections(arena, fake_llm):
    marker = new_marker("idle")
    host, port = arena.server.url.rsplit("/", 1)[1].split(":")
    code = (
        "import os, socket\n"
        "held = []\n"
        "for _ in range(200):\n"
        f"    s = socket.create_connection(({host!r}, {port}), timeout=5)\n"
        "    s.set_inheritable(True)\n"
        "    held.append(s)\n"
        f"os.execvp('sleep', ['{marker}', '60'])  # keeps every socket open\n"
    )
    fake_llm.script(Reply("Holding.", blocks=[Block("python", code)]))
    task_id = arena.server.submit("hold the API")
    deadline = time.monotonic() + 30
    while not running(marker):
        assert time.monotonic() < deadline, "the block never held its connections"
        time.sleep(0.02)
    # Held down, a request would wait for the block's minute of sleep; a
    # busy machine answers within far less than the bound.
    for method, path, body in (("GET", "/health", None), ("POST", "/tasks", {"instruction": "still there?"})):
        started = time.monotonic()
        response = requests.request(method, arena.server.url + path, json=body, timeout=30)
        assert response.status_code == 200 and time.monotonic() - started < 5, (path, response.text)
    requests.delete(f"{arena.server.url}/tasks/{task_id}", timeout=10)
    assert gone_within(marker, 5.0)
