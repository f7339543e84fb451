"""Fuzzing the API from its own OpenAPI document, in-process, with
schemathesis: every operation of a live server (embedded mode, workers
running tasks against the fake LLM) gets the document's boundary cases
("coverage") and generated valid and invalid requests ("fuzzing"), and a
few multi-step runs follow the document's links (submit, then read, cancel
or stream that task). Every answer must be no 5xx, a status the document
lists, with its content type, headers and schema (each SSE event too);
invalid input must be refused and valid input accepted.

Deterministic (a fixed seed, derandomized Hypothesis, no example database)
and bounded: some hundreds of requests, well under a minute. Reproduce a
failure with `python -m pytest tests/test_fuzz_openapi.py -q`.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis

from .live_server import LiveServer, app_config
from .fake_llm import FakeLLM, Reply

#: Generated requests per operation (valid and invalid), on top of the boundary cases.
EXAMPLES = 25
#: Multi-step scenarios, and steps in each.
SCENARIOS, STEPS = 15, 6

CONFIG = {
    "seed": 20240101,
    "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True,
                   "database": "none"},
    # Hypothesis's health checks time data generation; on a busy 2-core
    # machine they would fail the run for reasons that are not the API's.
    "suppress-health-check": ["all"],
    "request-timeout": 30,
    "checks": {
        # DELETE cancels a task; the task itself stays readable (the spec:
        # "cancel"), so reading it afterwards must succeed, not give 404.
        "use_after_free": {"enabled": False},
        # Schemathesis's list of answers that refuse bad input, plus 413: an
        # invalid body can also be over max_body_bytes, which is refused first.
        "negative_data_rejection": {"expected-statuses": [
            "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]},
    },
    "operations": [
        {
            # The spec answers 400 "task cannot be cancelled" for a finished
            # task, which a valid id (one the stateful runs made) can be.
            "include-operation-id": "cancel_task",
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404"]}},
        },
    ],
}


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory):
    """A live server whose tasks end at once: the fake LLM answers every
    request with a final reply, so no code runs and nothing leaves loopback.
    Callbacks may only go to 127.0.0.1, so a generated callback_url naming
    any other host is refused at submit (and one that names it is tried
    once); a generated `wait` holds a request for 5 s at most."""
    with FakeLLM() as llm:
        llm.responder = lambda body: Reply("Done.")
        config = app_config(tmp_path_factory.mktemp("fuzz"), llm, callback_allowed_hosts=["127.0.0.1"],
                            callback_retries=0, callback_timeout_s=1, max_wait_s=5, cancel_wait_s=0.5)
        server = LiveServer(config)
        yield server
        server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server):
    config = schemathesis.Config.from_dict(CONFIG)
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


def policy_checks_excluded(case) -> list:
    """The checks that cannot hold for `case`: whether a callback_url's host
    may be called is the server's policy (callback_allowed_hosts; by default
    public addresses only), which no schema can say, so a well-formed URL
    may rightly get 400."""
    body = case.body if isinstance(case.body, dict) else {}
    task = body.get("task") if isinstance(body.get("task"), dict) else body  # a multipart submit's task part
    if task.get("callback_url") is not None:
        return [schemathesis.checks.positive_data_acceptance]
    return []


@schema.parametrize()
def test_every_operation_answers_as_documented(case):
    case.call_and_validate(excluded_checks=policy_checks_excluded(case))


def test_multi_step_scenarios_answer_as_documented(api_schema):
    class Scenarios(api_schema.as_state_machine()):
        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, additional_checks=additional_checks,
                                   excluded_checks=policy_checks_excluded(case), transport_kwargs=kwargs or None,
                                   recorder=getattr(self, "recorder", None))

    Scenarios.run(settings=hypothesis.settings(
        max_examples=SCENARIOS, stateful_step_count=STEPS, derandomize=True, database=None, deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    ))
