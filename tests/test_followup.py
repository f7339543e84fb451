"""Follow-up turns: `previous_task_id` starts a task with an earlier task's
conversation and a copy of its files, through the real pipeline."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import requests

from sdk import AgentClient, AsyncAgentClient

from .fake_llm import Block, Reply


def conversation(request: dict) -> str:
    """Everything the model was sent in one request, as one text."""
    return json.dumps(request["body"]["messages"], ensure_ascii=False)


def follow_up(server, previous: str, instruction: str, **fields) -> requests.Response:
    return requests.post(f"{server.url}/tasks", json={"instruction": instruction, "previous_task_id": previous,
                                                      **fields}, timeout=10)


def test_a_follow_up_reads_the_previous_tasks_file_and_sees_its_conversation(server, fake_llm):
    fake_llm.script(Reply("Saving.", blocks=[Block("python", "open('notes.txt', 'w').write('alpha')\nprint('saved')")]),
                    Reply("Saved the note."))
    first = server.submit("write a note")
    assert server.wait_for(first)["status"] == "completed"

    fake_llm.script(Reply("Reading.", blocks=[Block("python", "print(open('notes.txt').read())")]),
                    Reply("It says alpha."))
    response = follow_up(server, first, "what did the note say?")
    assert response.status_code == 200, response.text
    second = response.json()["task_id"]
    assert server.wait_for(second)["status"] == "completed"

    result = requests.get(f"{server.url}/tasks/{second}/result", timeout=10).json()
    assert result["output"]["results"][0]["result"]["stdout"].strip() == "alpha"
    assert result["output"]["metadata"]["previous_task_id"] == first
    seen = conversation(fake_llm.requests[2])  # the follow-up's first request
    for part in ("write a note", "open('notes.txt', 'w')", "saved", "Saved the note.", "what did the note say?"):
        assert part in seen, part
    assert requests.get(f"{server.url}/tasks/{second}", timeout=10).json()["previous_task_id"] == first


def test_the_previous_task_and_its_files_stay_as_they_were(server, fake_llm):
    fake_llm.script(Reply("Saving.", blocks=[Block("python", "open('data.txt', 'w').write('one')")]), Reply("Done."))
    first = server.submit("write")
    server.wait_for(first)
    before = requests.get(f"{server.url}/tasks/{first}/result", timeout=10).json()

    fake_llm.script(Reply("Changing.", blocks=[Block("python", "open('data.txt', 'w').write('two')\n"
                                                               "open('more.txt', 'w').write('x')")]), Reply("Done."))
    second = follow_up(server, first, "change it").json()["task_id"]
    assert server.wait_for(second)["status"] == "completed"

    assert requests.get(f"{server.url}/tasks/{first}/files/data.txt", timeout=10).content == b"one"
    assert requests.get(f"{server.url}/tasks/{second}/files/data.txt", timeout=10).content == b"two"
    assert [f["path"] for f in requests.get(f"{server.url}/tasks/{first}/files", timeout=10).json()["files"]] \
        == ["data.txt"]
    assert requests.get(f"{server.url}/tasks/{first}/result", timeout=10).json() == before


def test_an_ordinary_task_shows_no_previous_task_id(server, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = server.submit("alone")
    server.wait_for(task_id)
    assert "previous_task_id" not in requests.get(f"{server.url}/tasks/{task_id}", timeout=10).json()
    metadata = requests.get(f"{server.url}/tasks/{task_id}/result", timeout=10).json()["output"]["metadata"]
    assert "previous_task_id" not in metadata


def test_a_follow_up_of_an_unknown_task_is_404_and_stores_nothing(server):
    missing = str(uuid.uuid4())
    response = follow_up(server, missing, "go on")
    assert response.status_code == 404
    assert response.json() == {"detail": f"previous_task_id: Task {missing} not found"}
    assert requests.get(f"{server.url}/tasks", timeout=10).json()["total"] == 0


def test_a_follow_up_of_an_unfinished_task_is_409_and_stores_nothing(start_server):
    server = start_server(workers=False)
    pending = server.submit("still waiting")
    response = follow_up(server, pending, "go on")
    assert response.status_code == 409
    assert "is pending" in response.json()["detail"] and "finished" in response.json()["detail"]
    assert requests.get(f"{server.url}/tasks", timeout=10).json()["total"] == 1


def test_a_chain_carries_every_earlier_turn_and_survives_an_earlier_tasks_cleanup(server, fake_llm):
    ids = []
    for word in ("apple", "banana", "cherry"):
        fake_llm.script(Reply(f"Noted {word}."))
        response = follow_up(server, ids[-1], f"remember {word}") if ids else None
        task_id = response.json()["task_id"] if response is not None else server.submit(f"remember {word}")
        assert server.wait_for(task_id)["status"] == "completed"
        ids.append(task_id)
    third = conversation(fake_llm.requests[-1])
    assert "remember apple" in third and "Noted banana." in third and "remember cherry" in third

    server.store.delete(ids[0])  # cleaned up: the later tasks still work
    fake_llm.script(Reply("Noted date."))
    fourth = follow_up(server, ids[2], "remember date").json()["task_id"]
    assert server.wait_for(fourth)["status"] == "completed"
    seen = conversation(fake_llm.requests[-1])
    assert "remember apple" not in seen and "remember banana" in seen and "Noted cherry." in seen


def test_over_the_budget_the_oldest_results_are_cut_and_the_model_is_told(start_server, fake_llm):
    server = start_server(engine={"followup_context_chars": 2000})
    fake_llm.script(Reply("Printing.", blocks=[Block("python", "print('A' * 5000)")]),
                    Reply("Printing more.", blocks=[Block("python", "print('small')")]), Reply("Printed."))
    first = server.submit("print a lot")
    assert server.wait_for(first)["status"] == "completed"
    fake_llm.script(Reply("Fine."))
    second = follow_up(server, first, "and now?").json()["task_id"]
    assert server.wait_for(second)["status"] == "completed"
    seen = conversation(fake_llm.requests[-1])
    assert "A" * 1000 not in seen and "output left out to fit" in seen
    assert "small" in seen and "1 of its oldest results were left out" in seen


def test_the_sdk_follows_up_sync_and_async(server, fake_llm):
    fake_llm.script(Reply("First."))
    with AgentClient(server.url) as client:
        first = client.run_task("one", timeout=15)
        fake_llm.script(Reply("Second."))
        submitted = client.follow_up(first.task_id, "two", metadata={"step": 2})
        result = client.wait_for_completion(submitted.task_id, timeout=15)
    assert result.output.answer == "Second."
    assert result.output.metadata["previous_task_id"] == first.task_id and result.output.metadata["step"] == 2

    async def scenario() -> str:
        async with AsyncAgentClient(server.url) as client:
            fake_llm.script(Reply("Third."))
            submitted = await client.follow_up(submitted_id, "three")
            return (await client.wait_for_completion(submitted.task_id, timeout=15)).output.answer

    submitted_id = submitted.task_id
    assert asyncio.run(scenario()) == "Third."


@pytest.mark.parametrize("value", ["", "x" * 65])
def test_a_malformed_previous_task_id_is_400(server, value):
    response = follow_up(server, value, "go on")
    assert response.status_code == 400 and "previous_task_id" in response.json()["detail"]


@pytest.mark.parametrize("llm", ["fake", "fake-anthropic"])
def test_the_carried_conversation_alternates_user_and_model_turns(server, fake_llm, llm):
    fake_llm.script(Reply("Trying.", blocks=[Block("python", "raise SystemExit(3)")]))
    first = server.submit("fail once", llm=llm, max_rounds=1)
    assert server.wait_for(first)["status"] == "error"  # ended on the results, not on an answer
    fake_llm.script(Reply("Fine now."))
    second = follow_up(server, first, "try again", llm=llm).json()["task_id"]
    assert server.wait_for(second)["status"] == "completed"
    messages = fake_llm.requests[-1]["body"]["messages"]
    roles = [m["role"] for m in messages if m["role"] != "system"]
    assert roles[0] == "user" and roles[-1] == "user"
    assert all(a != b for a, b in zip(roles, roles[1:])), roles
    assert "max_rounds=1" in conversation(fake_llm.requests[-1])  # told how the earlier task ended


def test_only_regular_files_and_folders_are_carried_over_never_what_a_link_points_at(server, fake_llm):
    plant = ("import os\n"
             "open('ok.txt', 'w').write('fine')\n"
             "os.makedirs('sub'); open('sub/inner.txt', 'w').write('deep')\n"
             "os.symlink('/etc/passwd', 'passwd-link')\n"
             "os.symlink('/etc', 'etc-link')\n"
             "os.mkfifo('pipe')\n"
             "open('twice.txt', 'w').write('x'); os.link('twice.txt', 'twice-again.txt')\n")
    fake_llm.script(Reply("Planting.", blocks=[Block("python", plant)]), Reply("Done."))
    first = server.submit("plant things")
    assert server.wait_for(first)["status"] == "completed"
    fake_llm.script(Reply("Listing.", blocks=[Block("python", "import os\nprint(sorted(os.listdir('.')))")]),
                    Reply("Listed."))
    second = follow_up(server, first, "what is here?").json()["task_id"]
    assert server.wait_for(second)["status"] == "completed"
    listed = requests.get(f"{server.url}/tasks/{second}/result", timeout=10).json()["output"]["results"][0]
    assert listed["result"]["stdout"].strip() == "['ok.txt', 'sub']"
    assert requests.get(f"{server.url}/tasks/{second}/files/sub/inner.txt", timeout=10).content == b"deep"
