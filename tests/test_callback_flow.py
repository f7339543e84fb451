"""Callbacks end to end: a task submitted with `callback_url` POSTs its
signed result to a receiver on loopback when it finishes (loopback being
listed in callback_allowed_hosts, as for n8n on the same host), and a server
with the default policy refuses local targets at submit time. The attempts
after the first are Dramatiq's retries of one message, on the embedded
broker as the server builds it."""

from __future__ import annotations

import json
import logging

import dramatiq
import pytest
import requests
from dramatiq.middleware import Middleware

from actors.broker import make_broker
from actors.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, CallbackPolicy, CallbackSender, verify_signature
from storage import StorageError

from .fake_llm import Reply
from .polling import wait_until
from .test_callbacks import finished_task, local, no_proxy, receiver, store  # noqa: F401  (fixtures)


#: What an operator sets for a receiver on the same host.
LOCAL = ["127.0.0.1"]

#: Targets the default policy refuses before anything is stored or sent:
#: loopback in three spellings, the cloud metadata service, private, "any".
LOCAL_TARGETS = [
    "http://127.0.0.1:5678/hook", "http://localhost:5678/hook", "http://[::1]:5678/hook",
    "http://[::ffff:127.0.0.1]:5678/hook", "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/hook", "http://0.0.0.0:5678/hook",
]


def callback_events(server, task_id):
    return [e["content"] for e in server.store.read_events(task_id) if e["type"] == "callback"]


def test_finished_task_posts_its_signed_result(start_server, fake_llm, receiver):
    server = start_server(callback_secret="k3y", callback_allowed_hosts=LOCAL)
    fake_llm.script(Reply("All done."))
    task_id = server.submit("call me back", callback_url=receiver.url, metadata={"source": "n8n"})
    wait_until(lambda: receiver.requests, what="the callback request")

    request = receiver.requests[0]
    body = json.loads(request["body"])
    assert body["task_id"] == task_id and body["status"] == "completed"
    assert body["output"]["answer"] == "All done." and body["output"]["metadata"]["source"] == "n8n"
    assert verify_signature("k3y", request["headers"][TIMESTAMP_HEADER], request["body"], request["headers"][SIGNATURE_HEADER])
    wait_until(lambda: callback_events(server, task_id), what="the callback event")
    assert callback_events(server, task_id)[0]["delivered"] is True


def test_a_failing_receiver_gets_retries_each_recorded(start_server, fake_llm, receiver):
    server = start_server(callback_retries=2, callback_backoff_s=0.05, callback_allowed_hosts=LOCAL)
    receiver.script = [(500, 0), (503, 0)]
    fake_llm.script(Reply("Done."))
    task_id = server.submit("retry me", callback_url=receiver.url)
    wait_until(lambda: len(callback_events(server, task_id)) == 3, what="three callback events")

    events = callback_events(server, task_id)
    assert [(e["attempt"], e["status_code"], e["delivered"]) for e in events] == [(1, 500, False), (2, 503, False), (3, 200, True)]
    assert len(receiver.requests) == 3


def test_cancelling_a_pending_task_calls_back_too(start_server, receiver):
    server = start_server(workers=False, callback_allowed_hosts=LOCAL)
    task_id = server.submit("never runs", callback_url=receiver.url)
    requests.delete(f"{server.url}/tasks/{task_id}")
    server.system.start_workers()
    wait_until(lambda: receiver.requests, what="the callback request")
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
    wait_until(lambda: callback_events(server, task_id), what="the callback event")
    assert callback_events(server, task_id)[0]["delivered"] is True and len(receiver.requests) == 1


# -- retries are Dramatiq's ------------------------------------------------------

class Enqueues(Middleware):
    """Records (message id, delay in ms) of every message the broker enqueues."""

    def __init__(self):
        self.seen: list[tuple[str, int | None]] = []

    def after_enqueue(self, broker, message, delay):
        self.seen.append((message.message_id, delay))


class Deliveries:
    """The callback actor on the embedded broker, declared with the policy's
    options as the server declares it, and one worker thread running it."""

    def __init__(self, store, policy: CallbackPolicy):
        self.broker = make_broker(None)
        self.enqueues = Enqueues()
        self.broker.add_middleware(self.enqueues)
        self.actor = dramatiq.Actor(CallbackSender(store, policy).deliver_current, broker=self.broker,
                                    actor_name="deliver_callback", queue_name="callbacks", priority=5,
                                    options=policy.actor_options())
        self.broker.emit_after("process_boot")
        self.worker = dramatiq.Worker(self.broker, worker_threads=1, worker_timeout=20)
        self.worker.start()

    def run(self, task_id: str) -> None:
        """Send the delivery and wait until no attempt is left to make."""
        self.actor.send(task_id)
        self.broker.join("callbacks", fail_fast=False)
        self.worker.join()

    def close(self) -> None:
        self.worker.stop()
        self.broker.close()


@pytest.fixture
def deliveries(store):
    made: list[Deliveries] = []

    def make(policy: CallbackPolicy, *, on=None) -> Deliveries:
        made.append(Deliveries(on or store, policy))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_each_retry_is_the_first_message_again_after_the_policy_delay(store, receiver, deliveries, caplog):
    receiver.script = [(500, 0), (503, 0)]
    task_id = finished_task(store, receiver.url)
    run = deliveries(local(retries=2, backoff_s=0.05))
    with caplog.at_level(logging.INFO):
        run.run(task_id)

    events = [e["content"] for e in store.read_events(task_id) if e["type"] == "callback"]
    assert [(e["attempt"], e["status_code"], e["next_attempt_in_s"]) for e in events] == [
        (1, 500, 0.05), (2, 503, 0.1), (3, 200, None)]
    assert [r["headers"]["X-AIPython-Attempt"] for r in receiver.requests] == ["1", "2", "3"]
    # Retries enqueued the one message again, as delayed as the events say
    # (a delayed message is enqueued twice: on callbacks.DQ, then when due).
    assert len({message_id for message_id, _ in run.enqueues.seen}) == 1
    assert [delay for _, delay in run.enqueues.seen if delay is not None] == [50, 100]
    assert run.broker.dead_letters == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a Retry is no error


def test_an_exhausted_delivery_ends_the_message_without_dead_letter(store, receiver, deliveries):
    receiver.script = [(500, 0)] * 5
    task_id = finished_task(store, receiver.url)
    run = deliveries(local(retries=1, backoff_s=0.01))
    run.run(task_id)
    events = [e["content"] for e in store.read_events(task_id) if e["type"] == "callback"]
    assert [(e["attempt"], e["next_attempt_in_s"]) for e in events] == [(1, 0.01), (2, None)]
    assert len(receiver.requests) == 2 and run.broker.dead_letters == []


class UnreadableResults:
    """A store whose results cannot be read (a failing disk)."""

    def __init__(self, store):
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def result(self, task_id):
        raise StorageError("the data folder cannot be read")


def test_a_storage_failure_fails_the_message_without_retry(store, receiver, deliveries, caplog):
    task_id = finished_task(store, receiver.url)
    run = deliveries(local(retries=5, backoff_s=0.01), on=UnreadableResults(store))
    with caplog.at_level(logging.ERROR, logger="dramatiq"):
        run.run(task_id)
    [dead] = run.broker.dead_letters
    assert dead.args == (task_id,) and len(run.enqueues.seen) == 1  # sent once, never re-enqueued
    assert receiver.requests == [] and "the data folder cannot be read" in caplog.text


def test_retry_when_allows_only_the_policy_retries_and_only_of_retry():
    policy = CallbackPolicy(retries=2)
    assert policy.actor_options() == {"max_retries": 2, "retry_when": policy.should_retry}
    assert policy.should_retry(0, dramatiq.Retry(delay=1)) and policy.should_retry(1, dramatiq.Retry(delay=1))
    assert not policy.should_retry(2, dramatiq.Retry(delay=1))
    assert not policy.should_retry(0, StorageError("disk full"))
