"""GET /metrics over real HTTP: what a scrape shows after tasks ran, the
task gauges against the store, the token, the exposition formats, and in
Redis mode one scrape of the web process showing what a worker process did."""

from __future__ import annotations

import signal

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from storage import TaskStore

from .fake_llm import Block, Reply
from .live_server import Processes, get_json
from .polling import wait_until
from .procs import new_marker, running


class Scrape:
    """The samples of one /metrics answer, parsed by prometheus-client."""

    def __init__(self, text: str):
        self.samples = {(sample.name, frozenset(sample.labels.items())): sample.value
                        for family in text_string_to_metric_families(text) for sample in family.samples}

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))


def scrape(url: str, **headers: str) -> Scrape:
    response = requests.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return Scrape(response.text)


def scrape_when(url: str, ready, what: str, timeout: float = 15) -> Scrape:
    """The first scrape for which `ready(scrape)` holds: counts recorded by
    another thread or process show up a moment after the task's status."""
    def check() -> Scrape | None:
        current = scrape(url)
        return current if ready(current) else None

    return wait_until(check, timeout=timeout, what=what)


def test_a_scrape_after_a_task_shows_what_it_did(server, fake_llm):
    fake_llm.script(Reply("Running it.", blocks=[Block("python", "print(6 * 7)")], input_tokens=11, output_tokens=7),
                    Reply("It printed 42.", input_tokens=23, output_tokens=3))
    task_id = server.submit("multiply")
    assert server.wait_for(task_id)["status"] == "completed"
    assert requests.get(f"{server.url}/no/such/route", timeout=10).status_code == 404

    metrics = scrape_when(server.url, lambda m: m.value("aipy_tasks_finished_total", status="completed") == 1,
                          "the task's end to be counted")
    assert metrics.value("aipy_tasks_submitted_total") == 1
    assert metrics.value("aipy_tasks_finished_total", status="error") == 0
    assert metrics.value("aipy_llm_calls_total", provider="fake") == 2
    assert metrics.value("aipy_llm_tokens_total", provider="fake", kind="input") == 34
    assert metrics.value("aipy_llm_tokens_total", provider="fake", kind="output") == 10
    assert metrics.value("aipy_code_blocks_total", outcome="success") == 1
    assert metrics.value("aipy_code_blocks_total", outcome="error") == 0
    assert metrics.value("aipy_task_duration_seconds_count", status="completed") == 1
    assert metrics.value("aipy_task_queue_wait_seconds_count") == 1
    assert metrics.value("aipy_task_queue_wait_seconds_bucket", le="+Inf") == 1
    assert metrics.value("aipy_http_requests_total", method="POST", route="/tasks", status="200") == 1
    assert metrics.value("aipy_http_requests_total", method="GET", route="/tasks/{task_id}", status="200") >= 1
    assert metrics.value("aipy_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert metrics.value("aipy_tasks_pending") == 0 and metrics.value("aipy_tasks_running") == 0

    # The scrape itself is counted, under its route.
    again = scrape(server.url)
    assert again.value("aipy_http_requests_total", method="GET", route="/metrics", status="200") >= 1


def test_pending_and_running_gauges_follow_the_store(start_server, fake_llm):
    server = start_server(workers=False)
    server.system.start_workers(threads=1)
    marker = new_marker("metrics-gauge")
    fake_llm.script(Reply("Sleeping.", blocks=[Block("python", f"import os\nos.execvp('sleep', ['{marker}', '60'])\n")]),
                    Reply("Done."))
    first = server.submit("runs until cancelled")
    wait_until(lambda: running(marker), what="the first task's block to run")
    second = server.submit("waits for the only worker thread")

    metrics = scrape(server.url)
    assert metrics.value("aipy_tasks_running") == 1 and metrics.value("aipy_tasks_pending") == 1

    assert requests.delete(f"{server.url}/tasks/{first}", timeout=10).status_code == 200
    assert server.wait_for(second)["status"] == "completed"
    metrics = scrape_when(server.url, lambda m: m.value("aipy_tasks_finished_total", status="completed") == 1,
                          "the second task's end to be counted")
    assert metrics.value("aipy_tasks_running") == 0 and metrics.value("aipy_tasks_pending") == 0
    assert metrics.value("aipy_tasks_finished_total", status="cancelled") == 1
    assert metrics.value("aipy_code_blocks_total", outcome="cancelled") == 1


def test_cancelling_a_pending_task_counts_its_end_without_a_duration(start_server):
    server = start_server(workers=False)
    task_id = server.submit("never runs")
    assert requests.delete(f"{server.url}/tasks/{task_id}", timeout=10).status_code == 200
    metrics = scrape(server.url)
    assert metrics.value("aipy_tasks_finished_total", status="cancelled") == 1
    assert metrics.value("aipy_task_duration_seconds_count", status="cancelled") == 0
    assert metrics.value("aipy_task_queue_wait_seconds_count") == 0


def test_metrics_need_the_token_and_count_refusals_under_their_route(start_server):
    server = start_server(workers=False, api_token="s3cret")
    refused = requests.get(f"{server.url}/metrics", timeout=10)
    assert refused.status_code == 401
    metrics = scrape(server.url, Authorization="Bearer s3cret")
    assert metrics.value("aipy_http_requests_total", method="GET", route="/metrics", status="401") == 1


def test_public_metrics_need_no_token_while_the_api_still_does(start_server):
    server = start_server(workers=False, api_token="s3cret", public_metrics=True)
    scrape(server.url)
    assert requests.get(f"{server.url}/tasks", timeout=10).status_code == 401
    document = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    assert document["paths"]["/metrics"]["get"]["security"] == []


def test_a_scraper_asking_for_openmetrics_gets_it(server):
    response = requests.get(f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"},
                            timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    families = {family.name: family for family in parse_openmetrics(response.text)}
    assert families["aipy_tasks_submitted"].type == "counter"
    assert families["aipy_task_duration_seconds"].type == "histogram"
    assert families["aipy_tasks_pending"].type == "gauge"


# -- Redis mode: web and worker are separate processes ------------------------------


def test_one_scrape_of_the_web_process_shows_the_workers_counts(tmp_path, fake_llm, redis_server):
    group = Processes(tmp_path, fake_llm, REDIS_URL=redis_server.url, AIPYTHON_METRICS_PUBLISH_INTERVAL_S="0.1")
    try:
        group.start("-m", "app.serve")
        worker = group.start("-m", "actors.worker")
        fake_llm.script(Reply("Working.", blocks=[Block("python", "print('from the worker')")]), Reply("Done."))
        task_id = group.submit("run on the worker")
        wait_until(lambda: group.status(task_id) == "completed", timeout=60, what="the task to complete")
        provider = TaskStore(group.data).get(task_id)["context"]["llm"]

        def shows_the_workers_counts(metrics: Scrape) -> bool:
            return (metrics.value("aipy_tasks_finished_total", status="completed") == 1
                    and metrics.value("aipy_code_blocks_total", outcome="success") == 1)

        metrics = scrape_when(group.url, shows_the_workers_counts, "the worker's counts in the web's scrape", timeout=30)
        assert metrics.value("aipy_llm_calls_total", provider=provider) == 2
        assert metrics.value("aipy_tasks_submitted_total") == 1  # the web process's own count
        assert metrics.value("aipy_task_queue_wait_seconds_count") == 1
        assert metrics.value("aipy_metrics_processes") == 2

        # A worker that stops hands its counts over: the totals do not fall.
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        metrics = scrape_when(group.url, lambda m: m.value("aipy_metrics_processes") == 1,
                              "the stopped worker's file to be gone")
        assert shows_the_workers_counts(metrics)
        assert metrics.value("aipy_llm_calls_total", provider=provider) == 2
        assert get_json(f"{group.url}/health")["mode"] == "redis"
    finally:
        group.stop_all()
