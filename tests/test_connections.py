"""The HTTP server's connection handling (app/http_server.py): idle clients
cannot starve the API, idle keep-alive connections are closed, and
waitress's own errors are JSON. Every connection goes to 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from functools import partial

import falcon
import pytest
import requests

from app.http_server import build_server, serve_until
from config.settings import Settings

#: The bound on a request's time while 200 idle connections are open; a
#: local request takes a few milliseconds, so this leaves a wide margin.
ANSWER_WITHIN_S = 0.1


def fastest(request, tries: int = 3) -> float:
    """The shortest of a few timed requests (one scheduler hiccup on a shared
    machine is not what is measured); each must succeed."""
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        response = request()
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return min(times)


def test_idle_connections_do_not_take_the_api_down(start_server):
    # waitress's default connection_limit (100) stopped accepting here.
    server = start_server(workers=False)
    with ExitStack() as idle:
        for _ in range(200):
            idle.enter_context(socket.create_connection(("127.0.0.1", server.server.effective_port), timeout=5))
        # Connections are accepted in order: once this answers, all 200 are in.
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
        health = partial(requests.get, f"{server.url}/health", timeout=5)
        submit = partial(requests.post, f"{server.url}/tasks", json={"instruction": "x"}, timeout=5)
        assert fastest(health) < ANSWER_WITHIN_S and fastest(submit) < ANSWER_WITHIN_S


def test_an_idle_connection_is_closed_after_the_channel_timeout(start_server):
    server = start_server(workers=False, http_channel_timeout_s=1)
    with socket.create_connection(("127.0.0.1", server.server.effective_port), timeout=15) as client:
        started = time.monotonic()
        assert client.recv(1) == b""  # returns when the server closes it
    assert 0.9 <= time.monotonic() - started < 10


def test_a_request_waitress_refuses_itself_is_answered_as_json(server):
    with socket.create_connection(("127.0.0.1", server.server.effective_port), timeout=5) as client:
        client.sendall(b"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 12abc\r\n\r\n")
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Content-Type: application/json" in head
    assert "Content-Length" in json.loads(body)["detail"]


def test_the_server_takes_its_connection_settings():
    settings = Settings(http_connection_limit=321, http_channel_timeout_s=7, http_threads=3, max_streams=2,
                        max_body_bytes=4096, max_upload_bytes=1000)
    server = build_server(falcon.App(), settings, host="127.0.0.1", port=0, refused_uids=None)
    try:
        adj = server.adj
        assert (adj.connection_limit, adj.channel_timeout, adj.threads, adj.max_request_body_size) == (321, 7, 5, 5096)
        assert adj.asyncore_use_poll and adj.cleanup_interval <= 7
    finally:
        server.close()


def test_a_server_served_until_an_event_answers_until_it_is_set_then_lets_its_port_go():
    server = build_server(falcon.App(), Settings(), host="127.0.0.1", port=0, refused_uids=None)
    port = server.effective_port
    stop = threading.Event()
    serving = threading.Thread(target=serve_until, args=(server, stop), daemon=True)
    serving.start()
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 404  # an app with no routes
    stop.set()
    serving.join(5)
    assert not serving.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_the_defaults_hold_a_thousand_connections_closed_after_a_minute_idle(monkeypatch):
    monkeypatch.delenv("AIPYTHON_HTTP_CONNECTION_LIMIT", raising=False)
    monkeypatch.delenv("AIPYTHON_HTTP_CHANNEL_TIMEOUT_S", raising=False)
    settings = Settings()
    assert (settings.http_connection_limit, settings.http_channel_timeout_s) == (1000, 60)


def test_the_connection_settings_come_from_the_environment(monkeypatch):
    # As the Procfile's web process (python -m app.serve) gets them.
    monkeypatch.setenv("AIPYTHON_HTTP_CONNECTION_LIMIT", "2000")
    monkeypatch.setenv("AIPYTHON_HTTP_CHANNEL_TIMEOUT_S", "30")
    settings = Settings()
    assert (settings.http_connection_limit, settings.http_channel_timeout_s) == (2000, 30)


def test_starting_a_server_raises_the_open_file_limit_to_the_hard_limit():
    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "from app.http_server import raise_open_file_limit\n"
        "raise_open_file_limit()\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard) or hard == resource.RLIM_INFINITY)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "True", result.stderr
