"""The round loop, scenario by scenario, through the real SDK clients talking
to the fake LLM over HTTP, for every provider and protocol where it applies.
Each scenario asserts the exact sequence of events and their key content."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from agent import Engine, make_provider
from agent.providers import Aborted, Turn
from agent.providers.retry import llm_retrying

from .conftest import COMBO_IDS, COMBOS, Recorder, fast_settings, make_engine, provider_settings
from .fake_llm import Block, Reply

pytestmark = pytest.mark.parametrize(("kind", "protocol"), COMBOS, ids=COMBO_IDS)


def brief(recorder: Recorder) -> list[tuple]:
    """Each event reduced to its type and the facts a scenario pins down."""
    out = []
    for kind, content, _ in recorder.events:
        if kind == "llm_response":
            out.append((kind, content["round"]))
        elif kind in ("exec_start",):
            out.append((kind, content["block_name"], content["language"]))
        elif kind == "exec_result":
            out.append((kind, content["block_name"], content["result"]["status"]))
        elif kind == "task_end":
            out.append((kind, content["status"], content["rounds"]))
        else:
            out.append((kind,))
    return out


def sent_back(llm, request_index: int) -> str:
    """Everything the engine told the model in one request, as text."""
    return str(llm.requests[request_index]["body"]["messages"])


def test_one_round_writes_a_file_and_prints(fake_llm, recorder, tmp_path, kind, protocol):
    code = "open('out.txt', 'w').write('hello file')\nprint('wrote it')\n"
    fake_llm.script(
        Reply("I will write the file.", blocks=[Block("python", code, name="make.py")]),
        Reply("Done: out.txt holds the greeting."),
    )
    outcome = make_engine(fake_llm, kind, protocol).run("write out.txt", tmp_path, recorder, task_id="t-1")

    assert brief(recorder) == [
        ("task_start",),
        ("llm_response", 1),
        ("exec_start", "make.py", "python"),
        ("exec_result", "make.py", "success"),
        ("llm_response", 2),
        ("task_end", "completed", 2),
    ]
    assert recorder.of("task_start") == [{"instruction": "write out.txt", "task_id": "t-1"}]
    first = recorder.of("llm_response")[0]
    assert first["llm"] == f"fake-{kind}" and "write the file" in first["message"]
    assert first["usage"] == {"input_tokens": 10, "output_tokens": 5}
    assert recorder.last("exec_start")["code"].strip() == code.strip()
    result = recorder.last("exec_result")["result"]
    assert set(result) == {"status", "output", "stdout", "stderr", "returncode", "duration_ms"}
    assert result["stdout"] == "wrote it\n" and result["returncode"] == 0
    end = recorder.last("task_end")
    assert end["answer"] == "Done: out.txt holds the greeting." and end["error"] is None
    assert end["usage"] == {"input_tokens": 20, "output_tokens": 10}
    assert set(end) == {"status", "answer", "error", "rounds", "duration_ms", "usage"}
    assert outcome.status == "completed"
    assert (tmp_path / "out.txt").read_text() == "hello file"
    assert (tmp_path / "make.py").read_text().strip() == code.strip()
    assert "wrote it" in sent_back(fake_llm, 1)


def test_error_in_round_one_is_fixed_in_round_two(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.script(
        Reply("Computing.", blocks=[Block("python", "print(1 / 0)")]),
        Reply("Fixing the division.", blocks=[Block("python", "print(1 / 1)")]),
        Reply("The answer is 1.0."),
    )
    make_engine(fake_llm, kind, protocol).run("divide", tmp_path, recorder)

    assert brief(recorder) == [
        ("task_start",),
        ("llm_response", 1),
        ("exec_start", "block-1", "python"),
        ("exec_result", "block-1", "error"),
        ("llm_response", 2),
        ("exec_start", "block-2", "python"),
        ("exec_result", "block-2", "success"),
        ("llm_response", 3),
        ("task_end", "completed", 3),
    ]
    failed = recorder.of("exec_result")[0]["result"]
    assert "ZeroDivisionError" in failed["stderr"] and failed["returncode"] == 1
    assert "ZeroDivisionError" in sent_back(fake_llm, 1)
    assert recorder.last("task_end")["answer"] == "The answer is 1.0."


def test_reply_without_code_is_the_final_answer(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.script(Reply("Paris is the capital of France."))
    outcome = make_engine(fake_llm, kind, protocol).run("capital of France?", tmp_path, recorder)

    assert brief(recorder) == [("task_start",), ("llm_response", 1), ("task_end", "completed", 1)]
    assert outcome.answer == "Paris is the capital of France."
    assert len(fake_llm.requests) == 1


def test_max_rounds_exceeded_ends_in_error(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.responder = lambda body: Reply("Again.", blocks=[Block("python", "print('x')")])
    outcome = make_engine(fake_llm, kind, protocol, max_rounds=2).run("loop forever", tmp_path, recorder)

    assert brief(recorder) == [
        ("task_start",),
        ("llm_response", 1),
        ("exec_start", "block-1", "python"),
        ("exec_result", "block-1", "success"),
        ("llm_response", 2),
        ("exec_start", "block-2", "python"),
        ("exec_result", "block-2", "success"),
        ("error",),
        ("task_end", "error", 2),
    ]
    assert "max_rounds=2" in recorder.last("error")["message"]
    assert outcome.status == "error" and "max_rounds=2" in outcome.error
    assert len(fake_llm.requests) == 2


def test_infinite_loop_is_stopped_by_the_time_limit(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.script(
        Reply("Looping.", blocks=[Block("python", "while True:\n    pass\n")]),
        Reply("That timed out; giving up."),
    )
    started = time.monotonic()
    make_engine(fake_llm, kind, protocol, exec_timeout_s=1).run("spin", tmp_path, recorder)

    assert time.monotonic() - started < 10
    assert brief(recorder) == [
        ("task_start",),
        ("llm_response", 1),
        ("exec_start", "block-1", "python"),
        ("exec_result", "block-1", "timeout"),
        ("llm_response", 2),
        ("task_end", "completed", 2),
    ]
    assert "timeout" in sent_back(fake_llm, 1)


def test_memory_bomb_is_stopped_by_the_memory_limit(fake_llm, recorder, tmp_path, kind, protocol):
    bomb = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))\n"
    fake_llm.script(Reply("Allocating.", blocks=[Block("python", bomb)]), Reply("Out of memory, as expected."))
    make_engine(fake_llm, kind, protocol, memory_mb=256).run("allocate", tmp_path, recorder)

    result = recorder.of("exec_result")[0]["result"]
    assert result["status"] == "error" and "MemoryError" in result["stderr"]
    assert recorder.last("task_end")["status"] == "completed"


def test_ten_megabytes_of_output_are_capped(fake_llm, recorder, tmp_path, kind, protocol):
    code = "import sys\nsys.stdout.write('x' * (10 * 1024 * 1024))\n"
    fake_llm.script(Reply("Flooding.", blocks=[Block("python", code)]), Reply("Flooded."))
    make_engine(fake_llm, kind, protocol, output_cap_bytes=65536).run("flood", tmp_path, recorder)

    result = recorder.of("exec_result")[0]["result"]
    assert result["status"] == "success"
    assert 65536 <= len(result["stdout"]) < 65536 + 300
    assert "truncated" in result["stdout"]
    assert len(sent_back(fake_llm, 1)) < 100_000


def test_code_cannot_see_the_servers_secrets(fake_llm, recorder, tmp_path, kind, protocol, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-secret-1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-server-secret-2")
    monkeypatch.setenv("AIPYTHON_API_TOKEN", "api-token-secret-3")
    monkeypatch.setenv("FAKE_LLM_KEY", "test-key")
    fake_llm.script(
        Reply("Dumping env.", blocks=[Block("python", "import os\nprint(dict(os.environ))\n")]),
        Reply("Listed."),
    )
    make_engine(fake_llm, kind, protocol).run("print env", tmp_path, recorder)

    stdout = recorder.of("exec_result")[0]["result"]["stdout"]
    assert "PATH" in stdout
    for secret in ("sk-server-secret-1", "sk-ant-server-secret-2", "api-token-secret-3", "test-key",
                   "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AIPYTHON_API_TOKEN", "FAKE_LLM_KEY"):
        assert secret not in stdout


def test_cancel_during_execution_ends_within_a_second(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.script(Reply("Sleeping.", blocks=[Block("python", "import time\ntime.sleep(60)\n")]))
    flipped: list[float] = []

    def probe() -> bool:
        if not flipped and recorder.seen("exec_start"):
            time.sleep(0.3)
            flipped.append(time.monotonic())
        return bool(flipped)

    outcome = make_engine(fake_llm, kind, protocol).run("sleep", tmp_path, recorder, cancelled=probe)

    assert brief(recorder) == [
        ("task_start",),
        ("llm_response", 1),
        ("exec_start", "block-1", "python"),
        ("exec_result", "block-1", "cancelled"),
        ("task_end", "cancelled", 1),
    ]
    assert outcome.status == "cancelled"
    assert recorder.events[-1][2] - flipped[0] < 1.0


def test_cancel_during_a_slow_streamed_reply_ends_within_a_second(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.script(Reply("word " * 200, chunk_delay_s=0.5))
    started = time.monotonic()
    cancel_at = started + 0.8
    outcome = make_engine(fake_llm, kind, protocol).run(
        "talk slowly", tmp_path, recorder, cancelled=lambda: time.monotonic() >= cancel_at
    )

    assert brief(recorder) == [("task_start",), ("task_end", "cancelled", 1)]
    assert outcome.status == "cancelled"
    assert recorder.events[-1][2] - cancel_at < 1.0


def test_unknown_language_is_reported_not_dropped(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.script(
        Reply("In Ruby.", blocks=[Block("ruby", "puts 42")]),
        Reply("Ruby is not available; here is the answer: 42."),
    )
    make_engine(fake_llm, kind, protocol).run("ruby please", tmp_path, recorder)

    assert brief(recorder) == [
        ("task_start",),
        ("llm_response", 1),
        ("exec_start", "block-1", "ruby"),
        ("exec_result", "block-1", "error"),
        ("llm_response", 2),
        ("task_end", "completed", 2),
    ]
    result = recorder.of("exec_result")[0]["result"]
    assert result["returncode"] is None and "not runnable" in result["output"]
    assert "not runnable" in sent_back(fake_llm, 1)


def test_llm_answering_500_twice_then_ok_is_retried(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.script(Reply(status=500), Reply(status=500), Reply("Fine now."))
    outcome = make_engine(fake_llm, kind, protocol, llm_retries=3).run("hello", tmp_path, recorder)

    assert brief(recorder) == [("task_start",), ("llm_response", 1), ("task_end", "completed", 1)]
    assert outcome.answer == "Fine now."
    assert len(fake_llm.requests) == 3


def test_llm_that_keeps_failing_ends_in_error_after_bounded_retries(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.responder = lambda body: Reply(status=503)
    outcome = make_engine(fake_llm, kind, protocol, llm_retries=2).run("hello", tmp_path, recorder)

    assert brief(recorder) == [("task_start",), ("error",), ("task_end", "error", 1)]
    assert "HTTP 503" in outcome.error
    assert len(fake_llm.requests) == 3


def test_a_cancel_cuts_a_retry_wait_short_and_nothing_is_sent_after_it(fake_llm, kind, protocol):
    fake_llm.responder = lambda body: Reply(status=503)
    engine = make_engine(fake_llm, kind, protocol)
    abort, retries = threading.Event(), []

    def on_retry(attempt, error, wait_s):
        retries.append((attempt, wait_s))
        abort.set()  # the task is cancelled as the first wait begins

    retrying = llm_retrying(retries=3, backoff_s=20.0, abort=abort, on_retry=on_retry)
    started = time.monotonic()
    with pytest.raises(Aborted):
        retrying(engine.provider.complete, engine.system, [Turn("user", "hello")], abort)
    assert time.monotonic() - started < 10
    assert len(fake_llm.requests) == 1
    assert len(retries) == 1 and retries[0][0] == 1 and 20.0 <= retries[0][1] <= 22.0  # up to 10 % jitter


def test_unreachable_llm_ends_in_error(recorder, tmp_path, kind, protocol):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = provider_settings(_NoLLM(port), kind, protocol)
    es = fast_settings(llm_retries=1)
    outcome = Engine(make_provider(settings, es.llm_timeout_s), es).run("hello", tmp_path, recorder)

    assert brief(recorder) == [("task_start",), ("error",), ("task_end", "error", 1)]
    assert "could not be reached" in outcome.error and str(port) in outcome.error
    assert recorder.last("error")["exception"]


def test_missing_api_key_fails_at_once_naming_what_to_fix(fake_llm, recorder, tmp_path, kind, protocol, monkeypatch):
    monkeypatch.delenv("AIPY_TEST_NO_SUCH_KEY", raising=False)
    engine = make_engine(fake_llm, kind, protocol, provider={"api_key": None, "api_key_env": "AIPY_TEST_NO_SUCH_KEY"})
    outcome = engine.run("hello", tmp_path, recorder)

    assert brief(recorder) == [("task_start",), ("error",), ("task_end", "error", 1)]
    for part in (f"fake-{kind}", "AIPY_TEST_NO_SUCH_KEY", "llm.json"):
        assert part in outcome.error
    assert fake_llm.requests == []


def test_rejected_api_key_fails_at_once_without_retries(fake_llm, recorder, tmp_path, kind, protocol):
    engine = make_engine(fake_llm, kind, protocol, llm_retries=3, provider={"api_key": "wrong-key"})
    outcome = engine.run("hello", tmp_path, recorder)

    assert outcome.status == "error"
    assert "rejected the API key" in outcome.error and "FAKE_LLM_KEY" in outcome.error
    assert len(fake_llm.requests) == 1


def test_eight_engines_at_once_see_only_their_own_output(fake_llm, tmp_path, kind, protocol):
    def script_for(i: int) -> list[Reply]:
        code = f"open('mine.txt', 'w').write('engine {i}')\nprint('I am {i}')\n"
        return [Reply(f"Engine {i} works.", blocks=[Block("python", code)]), Reply(f"Engine {i} done.")]

    runs = []
    for i in range(8):
        fake_llm.script(*script_for(i), model=f"model-{i}")
        engine = make_engine(fake_llm, kind, protocol, provider={"model": f"model-{i}"})
        runs.append((i, engine, Recorder(), tmp_path / f"ws-{i}"))
    threads = [threading.Thread(target=e.run, args=(f"task {i}", ws, rec)) for i, e, rec, ws in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    for i, _, rec, ws in runs:
        assert rec.of("exec_result")[0]["result"]["stdout"] == f"I am {i}\n"
        assert rec.last("task_end")["answer"] == f"Engine {i} done."
        assert sorted(p.name for p in ws.iterdir()) == ["mine.txt"]
        assert (ws / "mine.txt").read_text() == f"engine {i}"


class _NoLLM:
    """Base URLs that point at a closed port."""

    def __init__(self, port: int):
        self.openai_base_url = f"http://127.0.0.1:{port}/v1"
        self.anthropic_base_url = f"http://127.0.0.1:{port}"


def test_task_time_limit_ends_the_task_in_error(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.script(Reply("Sleeping.", blocks=[Block("python", "import time\ntime.sleep(60)\n")]))
    started = time.monotonic()
    outcome = make_engine(fake_llm, kind, protocol, task_timeout_s=1).run("sleep", tmp_path, recorder)

    assert time.monotonic() - started < 3
    assert brief(recorder) == [
        ("task_start",),
        ("llm_response", 1),
        ("exec_start", "block-1", "python"),
        ("exec_result", "block-1", "cancelled"),
        ("error",),
        ("task_end", "error", 1),
    ]
    assert "time limit" in outcome.error


def test_a_probe_that_returns_a_reason_stops_the_task_as_an_error(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.script(Reply("Sleeping.", blocks=[Block("python", "import time\ntime.sleep(60)\n")]))
    probe = lambda: "interrupted: the server stopped" if recorder.seen("exec_start") else False
    outcome = make_engine(fake_llm, kind, protocol).run("sleep", tmp_path, recorder, cancelled=probe)

    assert brief(recorder)[-3:] == [("exec_result", "block-1", "cancelled"), ("error",), ("task_end", "error", 1)]
    assert outcome.error == "interrupted: the server stopped"


def test_python_state_lasts_across_rounds_and_a_final_value_reaches_the_model(fake_llm, recorder, tmp_path, kind,
                                                                             protocol):
    fake_llm.script(
        Reply("Setting it.", blocks=[Block("python", "answer = 6 * 7\n")]),
        Reply("Showing it.", blocks=[Block("python", "answer\n")]),
        Reply("It is 42."),
    )
    make_engine(fake_llm, kind, protocol).run("remember a number", tmp_path, recorder)

    assert [r["result"]["status"] for r in recorder.of("exec_result")] == ["success", "success"]
    shown = recorder.of("exec_result")[1]["result"]
    assert shown["value"] == "42" and shown["output"] == "42" and shown["stdout"] == ""
    assert "--- value ---" in sent_back(fake_llm, 2) and "42" in sent_back(fake_llm, 2)


def test_the_fresh_python_state_forgets_between_rounds(fake_llm, recorder, tmp_path, kind, protocol):
    fake_llm.script(
        Reply("Setting it.", blocks=[Block("python", "answer = 42\n")]),
        Reply("Reading it.", blocks=[Block("python", "print('answer' in globals())\n")]),
        Reply("Forgotten."),
    )
    make_engine(fake_llm, kind, protocol, python_state="fresh").run("forget", tmp_path, recorder)

    assert recorder.of("exec_result")[1]["result"]["stdout"] == "False\n"
    assert "fresh interpreter" in str(fake_llm.requests[0]["body"])
