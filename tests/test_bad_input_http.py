"""Bad input found while fuzzing and probing the API (see docs/reliability.md,
"Bad input"): each gets a clear 4xx and changes nothing."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from .fake_llm import Reply


@pytest.mark.parametrize("raw", [
    '{"instruction": "x", "metadata": {"n": 1e999}}',
    '{"instruction": "x", "metadata": {"n": [-1E400]}}',
    '{"instruction": "x", "timeout_s": 1e999}',
])
def test_a_number_too_large_for_a_float_is_400_and_stores_nothing(server, raw):
    # Python reads 1e999 as Infinity without asking parse_constant: it would
    # be stored as Infinity (not JSON), shown as null and POSTed to a
    # callback as Infinity, which JSON parsers refuse.
    response = requests.post(f"{server.url}/tasks", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "too large for a number" in response.json()["detail"]
    assert server.store.list()[1] == 0


def test_large_but_finite_numbers_are_kept(server, fake_llm):
    fake_llm.script(Reply("Done."))
    raw = '{"instruction": "x", "metadata": {"big": 1e308, "long": 12345678901234567890}}'
    response = requests.post(f"{server.url}/tasks", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    task_id = response.json()["task_id"]
    server.wait_for(task_id)
    metadata = requests.get(f"{server.url}/tasks/{task_id}/result").json()["output"]["metadata"]
    assert metadata["big"] == 1e308 and metadata["long"] == 12345678901234567890


def raw_request(server, data: bytes) -> tuple[bytes, bytes]:
    """Send `data` as it is; (status line, body) of the answer, read until
    the server closes the connection."""
    with socket.create_connection(("127.0.0.1", server.server.effective_port), timeout=10) as client:
        client.sendall(data)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


@pytest.mark.parametrize(("request_bytes", "expected"), [
    (b"GARBAGE\r\n\r\n", "Start line is invalid"),
    (b"GET /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n", "Invalid header"),
    (b"GET /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: a\x01b\r\n\r\n", "Invalid header"),
])
def test_a_request_the_http_server_cannot_parse_is_a_json_400(server, request_bytes, expected):
    status, body = raw_request(server, request_bytes)
    assert b" 400 " in status and expected in json.loads(body)["detail"]


def test_a_declared_body_over_the_limit_is_413_before_it_is_sent(start_server):
    server = start_server(max_body_bytes=2048, max_upload_bytes=0)
    status, body = raw_request(server, b"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                       b"Content-Length: 5000\r\nConnection: close\r\n\r\n{")
    assert b" 413 " in status and "2048" in json.loads(body)["detail"]
    assert server.store.list()[1] == 0


@pytest.mark.parametrize("key", [b"", b"caf\xe9"])
def test_an_empty_or_non_ascii_idempotency_key_is_400(server, key):
    body = b'{"instruction": "x"}'
    status, answer = raw_request(server, b"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                         b"Idempotency-Key: " + key + b"\r\nContent-Length: " + str(len(body)).encode()
                                         + b"\r\nConnection: close\r\n\r\n" + body)
    assert b" 400 " in status and "Idempotency-Key" in json.loads(answer)["detail"]
    assert server.store.list()[1] == 0


def test_an_empty_query_value_means_the_default(start_server, fake_llm):
    # As the OpenAPI document says with allowEmptyValue (a form that leaves
    # a field blank sends `?limit=`).
    server = start_server(list_default_limit=1)
    fake_llm.script(Reply("One."), Reply("Two."))
    first, second = server.submit("one"), server.submit("two")
    server.wait_for(first)
    server.wait_for(second)

    listing = requests.get(f"{server.url}/tasks?limit=&offset=", timeout=10).json()
    assert (listing["limit"], listing["offset"], len(listing["tasks"])) == (1, 0, 1)
    assert requests.get(f"{server.url}/tasks/{first}?wait=", timeout=10).json()["status"] == "completed"
    events = requests.get(f"{server.url}/tasks/{first}/events?after=&format=", timeout=10)
    assert events.headers["Content-Type"].startswith("text/event-stream") and "id: 1\n" in events.text
    cleanup = requests.post(f"{server.url}/admin/cleanup?max_age_hours=", timeout=10)
    assert cleanup.json() == {"message": "Cleaned up 0 tasks"}  # the default age (24 h) keeps both
