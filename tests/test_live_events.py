"""GET /tasks/{id}/events (SSE and NDJSON) and ?wait= on status, result and
submit, over real HTTP."""

from __future__ import annotations

import json
import time

import httpx
import requests
from httpx_sse import EventSource

from .fake_llm import Block, Reply
from .live_server import read_sse

SLOW_BLOCK = "import time\nprint('tick', flush=True)\ntime.sleep(0.6)\nprint('tock')\n"

#: Runs until a file named "go" appears in its workspace (10 s at most),
#: then says whether it did.
GATED_BLOCK = """\
import os, time
for _ in range(1000):
    if os.path.exists("go"):
        break
    time.sleep(0.01)
print("went" if os.path.exists("go") else "gave up")
"""


def slow_task(server, fake_llm) -> str:
    fake_llm.script(Reply("Working.", blocks=[Block("python", SLOW_BLOCK)]), Reply("Finished.", chunk_delay_s=0.05))
    return server.submit("slow one")


def test_sse_delivers_events_while_the_task_runs(server, fake_llm):
    # The block ends only once the test, having read exec_start from the
    # stream, lets it go: a stream that held events back would see it give up.
    fake_llm.script(Reply("Working.", blocks=[Block("python", GATED_BLOCK)]), Reply("Finished."))
    task_id = server.submit("waits for the reader")
    events = []
    with httpx.stream("GET", f"{server.url}/tasks/{task_id}/events", timeout=20) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for event in read_sse(response):
            events.append(event)
            if event[1] == "exec_start":
                (server.store.workspace(task_id) / "go").touch()

    assert [e[1] for e in events] == ["task_start", "llm_response", "exec_start", "exec_result", "llm_response", "task_end"]
    assert [int(e[0]) for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(e[2]["seq"] == int(e[0]) and e[2]["type"] == e[1] for e in events)
    assert events[3][2]["content"]["result"]["stdout"] == "went\n"  # exec_start arrived while the block ran


def test_sse_resumes_after_last_event_id(server, fake_llm):
    task_id = slow_task(server, fake_llm)
    with httpx.stream("GET", f"{server.url}/tasks/{task_id}/events", timeout=20) as response:
        first = next(read_sse(response))  # then the connection drops
    assert first[1] == "task_start"
    with httpx.stream("GET", f"{server.url}/tasks/{task_id}/events", headers={"Last-Event-ID": first[0]},
                      timeout=20) as response:
        rest = list(read_sse(response))
    assert [int(e[0]) for e in rest] == [2, 3, 4, 5, 6] and rest[-1][1] == "task_end"


def test_ndjson_after_a_seq_on_a_finished_task(server, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = server.submit("quick")
    server.wait_for(task_id)
    response = requests.get(f"{server.url}/tasks/{task_id}/events", params={"format": "ndjson", "after": 1}, timeout=10)
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines() if line]
    assert [(e["seq"], e["type"]) for e in lines] == [(2, "llm_response"), (3, "task_end")]


def test_stream_of_a_cancelled_pending_task_ends(start_server):
    server = start_server(workers=False)
    task_id = server.submit("never runs")
    requests.delete(f"{server.url}/tasks/{task_id}")
    response = requests.get(f"{server.url}/tasks/{task_id}/events", params={"format": "ndjson"}, timeout=10)
    assert [json.loads(line)["type"] for line in response.text.splitlines() if line] == ["task_end"]


def test_quiet_streams_send_keepalives(start_server, fake_llm):
    server = start_server(workers=False, stream_keepalive_s=0.2)
    task_id = server.submit("waits in the queue")
    with requests.get(f"{server.url}/tasks/{task_id}/events", stream=True, timeout=10) as response:
        lines = response.iter_lines(decode_unicode=True)
        started = time.monotonic()
        assert [next(lines) for _ in range(4)] == [": keepalive", "", ": keepalive", ""]
        assert time.monotonic() - started >= 0.15


def test_bad_stream_parameters_are_400(server, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = server.submit("quick")
    assert requests.get(f"{server.url}/tasks/{task_id}/events", params={"format": "xml"}).status_code == 400
    for bad in ("abc", "²", "9" * 5000, "-1"):
        response = requests.get(f"{server.url}/tasks/{task_id}/events", headers={"Last-Event-ID": bad.encode().decode("latin-1")})
        assert response.status_code == 400 and "Last-Event-ID" in response.json()["detail"]


def test_many_open_streams_do_not_starve_the_api(start_server, fake_llm):
    server = start_server(workers=False, max_streams=12, http_threads=4)
    task_id = server.submit("stays pending")
    streams = [requests.get(f"{server.url}/tasks/{task_id}/events", stream=True, timeout=10) for _ in range(12)]
    try:
        started = time.monotonic()
        for _ in range(20):
            assert requests.get(f"{server.url}/tasks/{task_id}", timeout=5).status_code == 200
        assert time.monotonic() - started < 5
        over = requests.get(f"{server.url}/tasks/{task_id}/events", timeout=5)
        assert over.status_code == 503 and "max_streams" in over.json()["detail"]
    finally:
        for stream in streams:
            stream.close()


def test_wait_on_result_returns_as_soon_as_the_task_finishes(server, fake_llm):
    task_id = slow_task(server, fake_llm)
    started = time.monotonic()
    result = requests.get(f"{server.url}/tasks/{task_id}/result", params={"wait": 30}, timeout=40).json()
    assert result["status"] == "completed" and result["output"]["answer"] == "Finished."
    assert time.monotonic() - started < 10


def test_wait_on_status_gives_up_when_the_time_is_up(start_server):
    server = start_server(workers=False)
    task_id = server.submit("stays pending")
    started = time.monotonic()
    task = requests.get(f"{server.url}/tasks/{task_id}", params={"wait": 0.5}, timeout=10).json()
    assert task["status"] == "pending" and 0.4 < time.monotonic() - started < 3


def test_wait_is_capped_by_max_wait_s(start_server):
    server = start_server(workers=False, max_wait_s=0.3)
    task_id = server.submit("stays pending")
    started = time.monotonic()
    requests.get(f"{server.url}/tasks/{task_id}", params={"wait": 60}, timeout=10)
    assert time.monotonic() - started < 2


def test_a_huge_wait_is_capped_not_refused(start_server):
    server = start_server(workers=False, max_wait_s=0.2)
    task_id = server.submit("stays pending")
    response = requests.get(f"{server.url}/tasks/{task_id}", params={"wait": "1e300"}, timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "pending"


def test_bad_wait_is_400(server, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = server.submit("quick")
    for bad in ("soon", "-1", "inf", "nan"):
        response = requests.get(f"{server.url}/tasks/{task_id}", params={"wait": bad})
        assert response.status_code == 400 and "wait" in response.json()["detail"]


def test_an_empty_last_event_id_means_from_the_start(server, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = server.submit("quick")
    server.wait_for(task_id)
    response = requests.get(f"{server.url}/tasks/{task_id}/events", params={"format": "ndjson"},
                            headers={"Last-Event-ID": ""}, timeout=10)
    assert [json.loads(line)["seq"] for line in response.text.splitlines() if line] == [1, 2, 3]


def test_submit_with_wait_answers_the_result_when_it_comes_in_time(server, fake_llm):
    fake_llm.script(Reply("Quick answer."))
    response = requests.post(f"{server.url}/tasks", params={"wait": 20}, json={"instruction": "quick"}, timeout=30)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "completed"
    assert body["output"]["answer"] == "Quick answer."


def test_submit_with_wait_answers_as_usual_when_time_runs_out(start_server):
    server = start_server(workers=False)
    response = requests.post(f"{server.url}/tasks", params={"wait": 0.3}, json={"instruction": "slow"}, timeout=10)
    assert response.json()["status"] == "pending" and response.json()["message"] == "Task submitted successfully"


def test_a_stream_resumed_past_the_end_of_a_finished_task_closes(server, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = server.submit("quick")
    server.wait_for(task_id)
    started = time.monotonic()
    response = requests.get(f"{server.url}/tasks/{task_id}/events", params={"after": 3, "format": "ndjson"}, timeout=10)
    assert response.status_code == 200 and response.text.strip() == ""
    assert time.monotonic() - started < 2
