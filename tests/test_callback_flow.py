"""Callbacks end to end: a task submitted with `callback_url` POSTs its
signed result to a receiver on loopback when it finishes (loopback being
listed in callback_allowed_hosts, as for n8n on the same host), and a server
with the default policy refuses local targets at submit time."""

from __future__ import annotations

import json
import time

import pytest
import requests

from actors.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

from .fake_llm import Reply
from .test_callbacks import Receiver, no_proxy, receiver  # noqa: F401  (fixtures)


#: What an operator sets for a receiver on the same host.
LOCAL = ["127.0.0.1"]

#: Targets the default policy refuses before anything is stored or sent:
#: loopback in three spellings, the cloud metadata service, private, "any".
LOCAL_TARGETS = [
    "http://127.0.0.1:5678/hook", "http://localhost:5678/hook", "http://[::1]:5678/hook",
    "http://[::ffff:127.0.0.1]:5678/hook", "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/hook", "http://0.0.0.0:5678/hook",
]


def wait_for(check, timeout=10):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def callback_events(server, task_id):
    return [e["content"] for e in server.store.read_events(task_id) if e["type"] == "callback"]


def test_finished_task_posts_its_signed_result(start_server, fake_llm, receiver):
    server = start_server(callback_secret="k3y", callback_allowed_hosts=LOCAL)
    fake_llm.script(Reply("All done."))
    task_id = server.submit("call me back", callback_url=receiver.url, metadata={"source": "n8n"})
    wait_for(lambda: receiver.requests)

    request = receiver.requests[0]
    body = json.loads(request["body"])
    assert body["task_id"] == task_id and body["status"] == "completed"
    assert body["output"]["answer"] == "All done." and body["output"]["metadata"]["source"] == "n8n"
    assert verify_signature("k3y", request["headers"][TIMESTAMP_HEADER], request["body"], request["headers"][SIGNATURE_HEADER])
    wait_for(lambda: callback_events(server, task_id))
    assert callback_events(server, task_id)[0]["delivered"] is True


def test_a_failing_receiver_gets_retries_each_recorded(start_server, fake_llm, receiver):
    server = start_server(callback_retries=2, callback_backoff_s=0.05, callback_allowed_hosts=LOCAL)
    receiver.script = [(500, 0), (503, 0)]
    fake_llm.script(Reply("Done."))
    task_id = server.submit("retry me", callback_url=receiver.url)
    wait_for(lambda: len(callback_events(server, task_id)) == 3)

    events = callback_events(server, task_id)
    assert [(e["attempt"], e["status_code"], e["delivered"]) for e in events] == [(1, 500, False), (2, 503, False), (3, 200, True)]
    assert len(receiver.requests) == 3


def test_cancelling_a_pending_task_calls_back_too(start_server, receiver):
    server = start_server(workers=False, callback_allowed_hosts=LOCAL)
    task_id = server.submit("never runs", callback_url=receiver.url)
    requests.delete(f"{server.url}/tasks/{task_id}")
    server.system.start_workers()
    wait_for(lambda: receiver.requests)
    assert json.loads(receiver.requests[0]["body"])["status"] == "cancelled"


def test_callback_hosts_can_be_restricted(start_server, receiver):
    server = start_server(callback_allowed_hosts=["hooks.example.com"])
    response = requests.post(f"{server.url}/tasks", json={"instruction": "x", "callback_url": receiver.url})
    assert response.status_code == 400 and "callback_allowed_hosts" in response.json()["detail"]
    response = requests.post(f"{server.url}/tasks", json={"instruction": "x", "callback_url": "ftp://hooks.example.com/x"})
    assert response.status_code == 400 and "http" in response.json()["detail"]


def test_default_policy_refuses_local_targets_at_submit(server):
    for url in LOCAL_TARGETS:
        response = requests.post(f"{server.url}/tasks", json={"instruction": "x", "callback_url": url})
        assert response.status_code == 400, url
        detail = response.json()["detail"]
        assert detail.startswith("callback_url: host ") and "callback_allowed_hosts" in detail, detail
    assert requests.get(f"{server.url}/tasks").json()["total"] == 0  # nothing was stored


@pytest.mark.parametrize("allowed", [["127.0.0.1"], ["127.0.0.0/8"]])
def test_listed_loopback_is_accepted_and_called_back(start_server, fake_llm, receiver, allowed):
    server = start_server(callback_allowed_hosts=allowed)
    fake_llm.script(Reply("Done."))
    task_id = server.submit("call me back", callback_url=receiver.url)
    wait_for(lambda: callback_events(server, task_id))
    assert callback_events(server, task_id)[0]["delivered"] is True and len(receiver.requests) == 1
