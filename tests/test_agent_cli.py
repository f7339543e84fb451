"""`python -m agent "instruction"`: one task against the configured LLM,
events printed live, configured through the environment like the service."""

import os
import subprocess
import sys
from pathlib import Path

from .fake_llm import Block, Reply

ROOT = Path(__file__).resolve().parent.parent


def run_cli(fake_llm, tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPYTHON_")}
    env.update(AIPYTHON_LLM_BASE_URL=fake_llm.openai_base_url, AIPYTHON_LLM_API_KEY="test-key",
               AIPYTHON_LLM_MODEL="fake-cli", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_runs_a_task_and_prints_its_events(fake_llm, tmp_path):
    fake_llm.script(Reply("Counting.", blocks=[Block("python", "print(6 * 7)")]), Reply("It is 42."))
    proc = run_cli(fake_llm, tmp_path, "what is 6*7", "--workspace", str(tmp_path / "ws"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout
    assert "▶ task started\n    what is 6*7\n" in lines and "💬 round 1 · fake-cli" in lines
    assert "⚙ run block-1 (python)" in lines and "✓ block-1: success" in lines and "    42\n" in lines
    assert "■ completed (2 rounds" in lines
    assert f"workspace: {tmp_path / 'ws'}" in lines


def test_json_mode_prints_one_event_per_line(fake_llm, tmp_path):
    fake_llm.script(Reply("Nothing to run."))
    proc = run_cli(fake_llm, tmp_path, "hi", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [line.split('"type": "')[1].split('"')[0] for line in proc.stdout.splitlines()] == [
        "task_start", "llm_response", "task_end"]


def test_unknown_provider_is_a_usage_error(fake_llm, tmp_path):
    proc = run_cli(fake_llm, tmp_path, "hi", "--llm", "nope")
    assert proc.returncode == 2 and "unknown LLM provider 'nope'" in proc.stderr
