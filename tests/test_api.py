"""Every endpoint and status code of the spec, over real HTTP, in embedded
mode: waitress in front, the embedded broker's worker threads behind, the fake
LLM answering."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from actors.pipeline import TASK_QUEUE
from actors.recovery import recover
from storage import TaskStore

from .fake_llm import Block, Reply
from .live_server import LiveServer, app_config
from .polling import wait_until
from .procs import new_marker, running

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
STATUS_FIELDS = {"task_id", "instruction", "status", "created_at", "started_at", "completed_at", "error"}


def two_round_script(fake_llm):
    fake_llm.script(
        Reply("I'll create a Python script that counts lines in .txt files.",
              blocks=[Block("python", "open('a.txt', 'w').write('1\\n2\\n')\nprint('Script created successfully')\n",
                            name="count_lines.py")]),
        Reply("Running it.", blocks=[Block("python", "print(sum(1 for _ in open('a.txt')))")]),
        Reply("a.txt has 2 lines."),
    )


# -- information ---------------------------------------------------------------

def test_root_describes_the_api(server):
    body = requests.get(f"{server.url}/").json()
    assert body["name"] == "AIPython Agent API" and body["version"] == "1.0.0" and body["status"] == "running"
    assert TIMESTAMP.match(body["timestamp"])
    assert body["endpoints"]["submit_task"] == "POST /tasks"
    assert body["endpoints"]["cancel_task"] == "DELETE /tasks/{task_id}"


def test_health_reports_broker_and_storage(server):
    response = requests.get(f"{server.url}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy" and body["agent_manager"] == "initialized"
    assert body["mode"] == "embedded" and body["broker"] == "ok" and body["storage"] == "ok"


def test_health_is_503_when_the_data_folder_is_gone(server):
    tasks = server.store.root / "tasks"
    tasks.rename(tasks.with_name("moved"))  # as when a volume is unmounted
    try:
        response = requests.get(f"{server.url}/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unhealthy" and body["broker"] == "ok" and "missing" in body["storage"]
    finally:
        tasks.with_name("moved").rename(tasks)


# -- submit, status, result ------------------------------------------------------

def test_submit_answers_pending_with_a_uuid(server, fake_llm):
    fake_llm.script(Reply("Nothing to do."))
    response = requests.post(f"{server.url}/tasks", json={"instruction": "say hi"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"task_id", "status", "message"}
    assert str(uuid.UUID(body["task_id"])) == body["task_id"]
    assert body["status"] == "pending" and body["message"] == "Task submitted successfully"


def test_status_has_the_spec_fields(server, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = server.submit("say hi")
    task = server.wait_for(task_id)
    assert set(task) == STATUS_FIELDS
    assert task["status"] == "completed" and task["error"] is None and task["instruction"] == "say hi"
    for field in ("created_at", "started_at", "completed_at"):
        assert TIMESTAMP.match(task[field])
    assert task["created_at"] <= task["started_at"] <= task["completed_at"]


def test_result_of_a_multi_round_task_matches_the_spec_shape(server, fake_llm):
    two_round_script(fake_llm)
    metadata = {"source": "n8n", "workflow_id": "workflow_123", "user": "john_doe"}
    task_id = server.submit("Create a Python script to count lines in .txt files", metadata=metadata)
    server.wait_for(task_id)
    result = requests.get(f"{server.url}/tasks/{task_id}/result").json()

    assert set(result) == STATUS_FIELDS | {"output"}
    assert result["status"] == "completed" and result["error"] is None
    output = result["output"]
    assert set(output) == {"messages", "results", "errors", "metadata", "answer", "callback"}
    assert [m["type"] for m in output["messages"]] == [
        "task_start", "llm_response", "exec_start", "exec_result", "llm_response",
        "exec_start", "exec_result", "llm_response", "task_end"]
    for message in output["messages"]:
        assert set(message) == {"type", "content", "timestamp"} and TIMESTAMP.match(message["timestamp"])
    start = output["messages"][0]["content"]
    assert start == {"instruction": "Create a Python script to count lines in .txt files", "task_id": task_id}
    assert output["messages"][1]["content"]["llm"] == "fake-openai"
    assert output["results"][0] == {
        "block_name": "count_lines.py", "language": "python",
        "result": {**output["results"][0]["result"], "status": "success", "output": "Script created successfully\n"},
    }
    assert [set(r) for r in output["results"]] == [{"block_name", "language", "result"}] * 2
    assert output["results"][1]["result"]["stdout"] == "2\n"
    assert output["errors"] == []
    assert output["metadata"]["source"] == "n8n" and output["metadata"]["workflow_id"] == "workflow_123"
    assert output["metadata"]["instruction"] == "Create a Python script to count lines in .txt files"
    assert output["answer"] == "a.txt has 2 lines."


def test_failed_task_reports_its_error(server, fake_llm):
    fake_llm.responder = lambda body: Reply(status=401)  # the key is refused
    task_id = server.submit("hello")
    task = server.wait_for(task_id)
    assert task["status"] == "error" and "rejected the API key" in task["error"]
    result = requests.get(f"{server.url}/tasks/{task_id}/result").json()
    assert result["output"]["errors"][0]["message"] == task["error"]
    assert set(result["output"]["errors"][0]) == {"message", "exception"}


def test_per_task_options_override_the_settings(server, fake_llm):
    fake_llm.responder = lambda body: Reply("Again.", blocks=[Block("python", "print(1)")])
    task_id = server.submit("loop", llm="fake-anthropic", role="You are Marvin.", max_rounds=1)
    task = server.wait_for(task_id)
    assert task["status"] == "error" and "max_rounds=1" in task["error"]
    [request] = fake_llm.requests
    assert request["path"] == "/v1/messages" and request["body"]["system"].startswith("You are Marvin.")


def test_timeout_option_limits_the_task(server, fake_llm):
    fake_llm.script(Reply("Sleeping.", blocks=[Block("python", "import time; time.sleep(60)")]))
    task = server.wait_for(server.submit("sleep", timeout_s=1))
    assert task["status"] == "error" and "time limit" in task["error"]


# -- bad input ------------------------------------------------------------------

@pytest.mark.parametrize(("body", "expected"), [
    ({}, "instruction: Field required"),
    ({"instruction": ""}, "instruction: String should have at least 1 character"),
    ({"instruction": "   "}, "instruction: must not be blank"),
    ({"instruction": 42}, "instruction: Input should be a valid string"),
    ({"instruction": "x", "metadata": [1]}, "metadata: Input should be a valid dictionary"),
    ({"instruction": "x", "instructions": "typo"}, "instructions: unknown field"),
    ({"instruction": "x", "llm": "nope"}, "llm: unknown provider 'nope'; configured: fake, fake-anthropic"),
    ({"instruction": "x", "max_rounds": 0}, "max_rounds: Input should be greater than or equal to 1"),
    ({"instruction": "x", "timeout_s": -1}, "timeout_s: Input should be greater than 0"),
])
def test_invalid_submissions_are_400_with_a_clear_detail(server, body, expected):
    response = requests.post(f"{server.url}/tasks", json=body)
    assert response.status_code == 400
    assert expected in response.json()["detail"]
    assert server.store.list()[1] == 0


def test_body_that_is_not_json_is_400(server):
    response = requests.post(f"{server.url}/tasks", data="{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]
    response = requests.post(f"{server.url}/tasks", json=["instruction"])
    assert response.status_code == 400 and "must be a JSON object" in response.json()["detail"]


def test_body_that_is_not_declared_json_is_415(server):
    response = requests.post(f"{server.url}/tasks", data={"instruction": "x"})
    assert response.status_code == 415 and "Content-Type: application/json" in response.json()["detail"]


def test_oversized_body_is_413(start_server):
    server = start_server(max_body_bytes=2048)
    response = requests.post(f"{server.url}/tasks", json={"instruction": "x" * 5000})
    assert response.status_code == 413 and "2048" in response.json()["detail"]


def test_oversized_instruction_is_400(start_server):
    server = start_server(max_instruction_chars=10)
    response = requests.post(f"{server.url}/tasks", json={"instruction": "x" * 11})
    assert response.status_code == 400 and "max_instruction_chars" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/tasks/nope", "/tasks/../etc/passwd", f"/tasks/{uuid.uuid4()}",
                                  f"/tasks/{uuid.uuid4()}/result"])
def test_unknown_tasks_are_404(server, path):
    response = requests.get(f"{server.url}{path}")
    assert response.status_code == 404
    assert response.json()["detail"].endswith("not found") or response.json()["detail"].startswith("Not found")


def test_unknown_task_detail_names_the_task(server):
    task_id = str(uuid.uuid4())
    assert requests.get(f"{server.url}/tasks/{task_id}").json() == {"detail": f"Task {task_id} not found"}
    assert requests.delete(f"{server.url}/tasks/{task_id}").status_code == 404


def test_unknown_route_and_wrong_method_answer_json(server):
    response = requests.get(f"{server.url}/nope")
    assert response.status_code == 404 and response.json() == {"detail": "Not found: GET /nope"}
    response = requests.put(f"{server.url}/tasks")
    assert response.status_code == 405 and "PUT is not allowed on /tasks" in response.json()["detail"]


# -- listing ----------------------------------------------------------------------

def test_listing_is_newest_first_with_filters_and_pages(start_server, fake_llm):
    server = start_server(workers=False)
    ids = [server.submit(f"task {i}") for i in range(5)]
    server.store.transition(ids[1], "running")
    server.store.transition(ids[1], "completed")

    body = requests.get(f"{server.url}/tasks").json()
    assert list(body["tasks"]) == ids[::-1] and body["total"] == 5
    assert set(body["tasks"][ids[0]]) == STATUS_FIELDS - {"error"}
    assert body["tasks"][ids[0]]["task_id"] == ids[0]

    page = requests.get(f"{server.url}/tasks", params={"limit": 2, "offset": 1}).json()
    assert list(page["tasks"]) == [ids[3], ids[2]] and page["total"] == 5 and page["limit"] == 2
    done = requests.get(f"{server.url}/tasks", params={"status": "completed"}).json()
    assert list(done["tasks"]) == [ids[1]] and done["total"] == 1


@pytest.mark.parametrize(("params", "expected"), [
    ({"status": "done"}, "status must be one of"),
    ({"limit": 0}, "limit must be between 1 and 1000"),
    ({"limit": "many"}, "limit must be an integer"),
    ({"offset": -1}, "offset must be between"),
])
def test_bad_listing_parameters_are_400(server, params, expected):
    response = requests.get(f"{server.url}/tasks", params=params)
    assert response.status_code == 400 and expected in response.json()["detail"]


# -- cancel ------------------------------------------------------------------------

def test_cancel_pending_task_means_it_never_starts(start_server, fake_llm):
    server = start_server(workers=False)
    task_id = server.submit("never run")
    response = requests.delete(f"{server.url}/tasks/{task_id}")
    assert response.status_code == 200
    assert response.json() == {"message": f"Task {task_id} cancelled", "status": "cancelled"}
    server.system.start_workers()
    server.system.broker.join(TASK_QUEUE, timeout=10_000)  # the message was taken and handled
    server.system.worker.join()
    task = requests.get(f"{server.url}/tasks/{task_id}").json()
    assert task["status"] == "cancelled" and task["started_at"] is None
    assert fake_llm.requests == []


def test_cancel_running_task_kills_its_code_within_a_second(server, fake_llm):
    marker = new_marker()
    fake_llm.script(Reply("Sleeping.", blocks=[Block("python", f"import os\nos.execvp('sleep', ['{marker}', '60'])\n")]))
    task_id = server.submit("sleep")
    wait_until(lambda: running(marker), what="the block to start")

    started = time.monotonic()
    response = requests.delete(f"{server.url}/tasks/{task_id}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert time.monotonic() - started < 1.5
    assert not running(marker)
    result = requests.get(f"{server.url}/tasks/{task_id}/result").json()
    assert result["output"]["messages"][-1]["content"]["status"] == "cancelled"


def test_cancel_finished_task_is_400(server, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = server.submit("quick")
    server.wait_for(task_id)
    response = requests.delete(f"{server.url}/tasks/{task_id}")
    assert response.status_code == 400
    assert response.json() == {"detail": f"Task {task_id} is already completed and cannot be cancelled"}


# -- cleanup -----------------------------------------------------------------------

def test_cleanup_removes_old_finished_tasks_and_keeps_running_and_young_ones(start_server, fake_llm):
    server = start_server(workers=False)
    old_clock = lambda: datetime.now(timezone.utc) - timedelta(hours=30)
    old_store = TaskStore(server.store.root, clock=old_clock)
    old_done = old_store.create("old and done")["task_id"]
    old_store.transition(old_done, "running")
    old_store.transition(old_done, "completed")
    old_running = old_store.create("old but running")["task_id"]
    old_store.transition(old_running, "running")
    young_done = server.store.create("young and done")["task_id"]
    server.store.transition(young_done, "running")
    server.store.transition(young_done, "error", error="x")

    response = requests.post(f"{server.url}/admin/cleanup")
    assert response.status_code == 200 and response.json() == {"message": "Cleaned up 1 tasks"}
    remaining = set(requests.get(f"{server.url}/tasks").json()["tasks"])
    assert remaining == {old_running, young_done}
    assert requests.get(f"{server.url}/tasks/{old_done}").status_code == 404

    response = requests.post(f"{server.url}/admin/cleanup", params={"max_age_hours": 0})
    assert response.json() == {"message": "Cleaned up 1 tasks"}
    assert set(requests.get(f"{server.url}/tasks").json()["tasks"]) == {old_running}


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_cleanup_with_a_bad_age_is_400(server, value):
    response = requests.post(f"{server.url}/admin/cleanup", params={"max_age_hours": value})
    assert response.status_code == 400 and "max_age_hours" in response.json()["detail"]


# -- restart ----------------------------------------------------------------------

def test_restart_requeues_pending_tasks_and_fails_interrupted_ones(tmp_path, fake_llm):
    config = app_config(tmp_path, fake_llm)
    store = TaskStore(config.settings.data_dir)
    pending = store.create("left pending")["task_id"]
    running = store.create("left running")["task_id"]
    store.transition(running, "running")
    fake_llm.script(Reply("Picked up again."))

    server = LiveServer(config, workers=False)
    try:
        recover(server.system.store, server.system.pipeline)
        server.system.start_workers()
        assert server.wait_for(pending)["status"] == "completed"
        interrupted = server.wait_for(running)
        assert interrupted["status"] == "error"
        assert interrupted["error"] == "interrupted: the server stopped while this task ran"
    finally:
        server.stop()


def test_lifecycle_is_logged_with_the_task_id(server, fake_llm, caplog):
    caplog.set_level("INFO")
    fake_llm.script(Reply("Done."))
    task_id = server.submit("log me")
    server.wait_for(task_id)
    server.system.broker.join(TASK_QUEUE, timeout=10_000)  # the runner has logged the end too
    server.system.worker.join()
    lines = [r.getMessage() for r in caplog.records]
    assert f"Task submitted: {task_id}" in lines
    assert f"Task {task_id} started" in lines and f"Task {task_id} completed" in lines


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"instruction": "x", "metadata": {"n": ' + "9" * 5000 + "}}", "not valid JSON"),
    ('{"instruction": "x", "metadata": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    ('{"instruction": "x", "metadata": {"n": NaN}}', "NaN is not a JSON value"),
    ('{"instruction": "x", "timeout_s": Infinity}', "Infinity is not a JSON value"),
    ('{"instruction": "x", "metadata": {"a": "\\udcff"}}', "invalid Unicode"),
    ('{"instruction": "\\ud800"}', "invalid Unicode"),
    (b'{"instruction": "\xff\xfe"}', "not valid JSON"),
])
def test_hostile_json_is_400_and_stores_nothing(server, raw, expected):
    response = requests.post(f"{server.url}/tasks", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and expected in response.json()["detail"]
    assert server.store.list()[1] == 0


def test_a_damaged_task_file_does_not_break_the_listing(start_server):
    server = start_server(workers=False)
    good = server.submit("good")
    bad = server.submit("bad")
    (server.store.tasks_dir / bad / "task.json").write_text(f'{{"task_id": "{bad}", "status": "completed"}}')
    listing = requests.get(f"{server.url}/tasks")
    assert listing.status_code == 200 and list(listing.json()["tasks"]) == [good]
    response = requests.get(f"{server.url}/tasks/{bad}")
    assert response.status_code == 503 and "lacks its instruction" in response.json()["detail"]
