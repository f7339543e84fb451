"""`aipy-agent tail TASK_ID` (sdk.tail.main) against a live server."""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from sdk.tail import main

from .fake_llm import Block, Reply

LONG_OUTPUT = "for i in range(30):\n    print('line', i)\n"


def finished_task(server, fake_llm) -> str:
    fake_llm.script(
        Reply("Let me count.", blocks=[Block("python", LONG_OUTPUT, name="count.py")]),
        Reply("Counted to 29."),
    )
    task_id = server.submit("count to 29")
    server.wait_for(task_id)
    return task_id


def test_human_output_tells_the_story_of_a_completed_task(server, fake_llm, capsys):
    task_id = finished_task(server, fake_llm)
    assert main([task_id, "--url", server.url]) == 0
    out = capsys.readouterr().out
    assert "▶ task started" in out and "count to 29" in out
    assert "💬 round 1 · fake-openai" in out and "Let me count." in out
    assert "⚙ run count.py (python)" in out
    assert "✓ count.py: success" in out
    assert "line 19" in out and "line 20" not in out and "… 10 more lines" in out
    assert "■ completed (2 rounds" in out and "Counted to 29." in out
    lines = out.splitlines()
    assert lines.index(next(l for l in lines if "⚙ run" in l)) < lines.index(next(l for l in lines if "■" in l))


def test_json_prints_one_event_per_line_ending_in_task_end(server, fake_llm, capsys):
    task_id = finished_task(server, fake_llm)
    assert main([task_id, "--url", server.url, "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "task_end" and events[-1]["content"]["status"] == "completed"
    assert {"seq", "type", "timestamp", "content"} <= set(events[0])


def test_after_skips_the_events_already_seen(server, fake_llm, capsys):
    task_id = finished_task(server, fake_llm)
    assert main([task_id, "--url", server.url, "--json", "--after", "4"]) == 0
    assert [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()] == [5, 6]


def test_url_comes_from_the_environment(server, fake_llm, capsys, monkeypatch):
    task_id = finished_task(server, fake_llm)
    monkeypatch.setenv("AIPYTHON_URL", server.url)
    assert main([task_id, "--json"]) == 0
    assert capsys.readouterr().out.count("\n") == 6


def test_failed_task_exits_1_and_shows_why(server, fake_llm, capsys):
    fake_llm.script(Reply("Again.", blocks=[Block("python", "print(1)")]))
    task_id = server.submit("loop", max_rounds=1)
    server.wait_for(task_id)
    assert main([task_id, "--url", server.url]) == 1
    out = capsys.readouterr().out
    assert "■ error" in out and "error: " in out


def test_unknown_task_exits_2_with_a_message(server, capsys):
    task_id = str(uuid.uuid4())
    assert main([task_id, "--url", server.url]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == f"error: task {task_id} not found"


def test_unreachable_server_exits_2(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["some-task", "--url", f"http://127.0.0.1:{port}"]) == 2
    assert f"error: no answer from http://127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["t", "--after", "-1"], ["t", "--bogus"]])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "usage: aipy-agent tail" in capsys.readouterr().err


def test_wrong_token_exits_2(start_server, capsys):
    server = start_server(api_token="s3cret")
    assert main([str(uuid.uuid4()), "--url", server.url, "--token", "nope"]) == 2
    assert "refused the API token" in capsys.readouterr().err
