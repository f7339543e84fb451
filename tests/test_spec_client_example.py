"""The spec's own "Python Client Example" (spec/agent-mode.md), run as it is
written there against a live server: the contract we promise the simplest
callers. The block between the markers is the spec's text, unchanged (its
trailing "# Usage" lines become the first test, with the base URL pointed
at the test server)."""

from __future__ import annotations

from .fake_llm import Block, Reply

# -- from the spec, verbatim ------------------------------------------------------
import requests
import time
import json

class AIPythonClient:
    def __init__(self, base_url='http://127.0.0.1:8848'):
        self.base_url = base_url
    
    def submit_task(self, instruction, metadata=None):
        response = requests.post(
            f'{self.base_url}/tasks',
            json={
                'instruction': instruction,
                'metadata': metadata or {}
            }
        )
        return response.json()
    
    def wait_for_completion(self, task_id, poll_interval=2):
        while True:
            response = requests.get(f'{self.base_url}/tasks/{task_id}')
            task = response.json()
            
            if task['status'] in ['completed', 'error', 'cancelled']:
                break
                
            time.sleep(poll_interval)
        
        # Get full results
        response = requests.get(f'{self.base_url}/tasks/{task_id}/result')
        return response.json()

# -- end of the spec's example -------------------------------------------------------

STATUS_FIELDS = {"task_id", "instruction", "status", "created_at", "started_at", "completed_at", "error"}


def assert_spec_result_shape(result: dict, task_id: str, instruction: str) -> None:
    assert set(result) == STATUS_FIELDS | {"output"}
    assert result["task_id"] == task_id and result["instruction"] == instruction
    assert result["status"] in ("completed", "error", "cancelled")
    assert all(result[key].endswith("Z") for key in ("created_at", "started_at", "completed_at"))
    output = result["output"]
    assert {"messages", "results", "errors", "metadata"} <= set(output)
    for message in output["messages"]:
        assert set(message) == {"type", "content", "timestamp"}
    for block in output["results"]:
        assert set(block) == {"block_name", "language", "result"}
        assert {"status", "output"} <= set(block["result"])
    for error in output["errors"]:
        assert set(error) == {"message", "exception"}
    assert output["metadata"]["instruction"] == instruction


def test_usage_as_in_the_spec(server, fake_llm):
    fake_llm.script(
        Reply("I'll create a script.", blocks=[Block("python", "print('analysis ready')", name="analyze.py")]),
        Reply("The script analyze.py is ready."),
    )
    client = AIPythonClient(base_url=server.url)
    task = client.submit_task('Create a data analysis script for CSV files')
    result = client.wait_for_completion(task['task_id'])
    text = json.dumps(result, indent=2)

    assert set(task) == {"task_id", "status", "message"} and task["status"] == "pending"
    assert task["message"] == "Task submitted successfully"
    assert_spec_result_shape(json.loads(text), task["task_id"], "Create a data analysis script for CSV files")
    assert result["status"] == "completed" and result["error"] is None
    types = [m["type"] for m in result["output"]["messages"]]
    assert types[0] == "task_start" and types[-1] == "task_end" and "llm_response" in types
    assert result["output"]["messages"][0]["content"]["instruction"] == 'Create a data analysis script for CSV files'
    [block] = result["output"]["results"]
    assert block["block_name"] == "analyze.py" and block["language"] == "python"
    assert block["result"]["status"] == "success" and "analysis ready" in block["result"]["output"]
    assert result["output"]["errors"] == []


def test_metadata_comes_back_and_failures_keep_the_shape(server, fake_llm):
    fake_llm.script(Reply("Trying.", blocks=[Block("python", "import pandas_that_is_not_there")]),
                    Reply("It failed."))
    client = AIPythonClient(base_url=server.url)
    metadata = {"source": "n8n", "workflow_id": "workflow_123", "user": "john_doe"}
    task = client.submit_task("Count lines", metadata)
    result = client.wait_for_completion(task["task_id"], poll_interval=0.05)

    assert_spec_result_shape(result, task["task_id"], "Count lines")
    assert {**result["output"]["metadata"], **metadata} == result["output"]["metadata"]
    [block] = result["output"]["results"]
    assert block["result"]["status"] == "error" and "ModuleNotFoundError" in block["result"]["output"]


def test_a_failed_task_ends_the_polling_with_its_error(server, fake_llm):
    fake_llm.script(Reply("Again.", blocks=[Block("python", "print(1)")]))
    client = AIPythonClient(base_url=server.url)
    task = client.submit_task("never ends")
    task_id = task["task_id"]
    # max_rounds is an extension; the spec's client sends only instruction and metadata,
    # so the task runs until the fake model has no reply left and ends as error.
    result = client.wait_for_completion(task_id, poll_interval=0.05)
    assert_spec_result_shape(result, task_id, "never ends")
    assert result["status"] == "error" and result["error"]
