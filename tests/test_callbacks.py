"""Task-completion callbacks (actors/callbacks.py) against a real store and a
real HTTP receiver on 127.0.0.1, which the policy must list: by default
callbacks may not target loopback (tests/test_callback_guard.py)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from actors.callbacks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackPolicy,
    CallbackSender,
    check_callback_url,
    sign,
    verify_signature,
)
from storage import TaskStore

SECRET = "s3cret"


class Receiver:
    """A webhook receiver: records each request (headers are looked up
    case-insensitively) and answers the next scripted
    (status, sleep seconds); 200 once the script runs out."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[tuple[int, float]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": self.headers, "body": body})
                status, sleep = receiver.script.pop(0) if receiver.script else (200, 0.0)
                if sleep:
                    time.sleep(sleep)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # a client that timed out
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """The receivers are local: a proxy from the developer's environment must
    not get between them and the test client (requests honours these)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def store(tmp_path):
    s = TaskStore(tmp_path)
    yield s
    s.close()


def finished_task(store: TaskStore, url: str | None) -> str:
    extra = {"callback_url": url} if url else None
    task_id = store.create("print 42", {"job": 7}, extra=extra)["task_id"]
    store.transition(task_id, "running", context={"llm": "fake", "model": "fake-1"})
    store.append_event(task_id, "exec_result", {"block_name": "main", "language": "python", "result": {"stdout": "42\n"}})
    store.append_event(task_id, "task_end", {"status": "completed", "answer": "42", "error": None})
    store.transition(task_id, "completed")
    return task_id


def callback_events(store: TaskStore, task_id: str) -> list[dict]:
    return [e["content"] for e in store.read_events(task_id) if e["type"] == "callback"]


def local(**changes) -> CallbackPolicy:
    """A policy that lets callbacks reach the receiver on 127.0.0.1."""
    return CallbackPolicy(allowed_hosts=("127.0.0.1",), **changes)


def test_delivered_first_try_with_result_body_and_headers(store, receiver):
    task_id = finished_task(store, receiver.url)
    expected = store.result(task_id)
    assert CallbackSender(store, local()).deliver(task_id, 1) is None
    [request] = receiver.requests
    assert request["path"] == "/hook"
    assert json.loads(request["body"]) == expected
    assert request["body"] == json.dumps(expected).encode()
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "AIPython-Agent-Callback/1.0"
    assert headers["X-AIPython-Task-Id"] == task_id
    assert headers["X-AIPython-Attempt"] == "1"
    assert callback_events(store, task_id) == [{
        "url": receiver.url, "attempt": 1, "delivered": True, "status_code": 200,
        "error": None, "next_attempt_in_s": None,
    }]


def test_signature_verifies_with_the_secret_only(store, receiver):
    task_id = finished_task(store, receiver.url)
    CallbackSender(store, local(secret=SECRET)).deliver(task_id, 1)
    [request] = receiver.requests
    body, headers = request["body"], request["headers"]
    timestamp, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert abs(int(timestamp) - time.time()) < 60
    assert signature.startswith("sha256=") and signature == sign(SECRET, timestamp, body)
    assert verify_signature(SECRET, timestamp, body, signature)
    assert verify_signature(SECRET, timestamp, body, signature, tolerance_s=300)
    assert not verify_signature("wrong", timestamp, body, signature)
    assert not verify_signature(SECRET, timestamp, body + b" ", signature)
    assert not verify_signature(SECRET, str(int(timestamp) + 1), body, signature)
    assert not verify_signature(SECRET, "1000", body, sign(SECRET, "1000", body), tolerance_s=300)
    assert not verify_signature(SECRET, timestamp, body, "")


def test_unsigned_without_secret(store, receiver):
    task_id = finished_task(store, receiver.url)
    CallbackSender(store, local()).deliver(task_id, 1)
    headers = receiver.requests[0]["headers"]
    assert TIMESTAMP_HEADER not in headers and SIGNATURE_HEADER not in headers


def test_retries_after_500s_until_delivered(store, receiver):
    receiver.script = [(500, 0), (500, 0)]
    task_id = finished_task(store, receiver.url)
    sender = CallbackSender(store, local(backoff_s=2.0))
    delays = [sender.deliver(task_id, 1), sender.deliver(task_id, 2)]
    assert delays == [2.0, 4.0]
    assert sender.deliver(task_id, 3) is None
    events = callback_events(store, task_id)
    assert [(e["attempt"], e["delivered"], e["status_code"]) for e in events] == [(1, False, 500), (2, False, 500), (3, True, 200)]
    assert events[0]["error"] == "HTTP 500" and events[0]["next_attempt_in_s"] == 2.0
    assert [r["headers"]["X-AIPython-Attempt"] for r in receiver.requests] == ["1", "2", "3"]


def test_exhausted_retries_end_delivery_and_backoff_is_capped(store, receiver):
    receiver.script = [(503, 0)] * 10
    task_id = finished_task(store, receiver.url)
    sender = CallbackSender(store, local(retries=3, backoff_s=2.0, max_backoff_s=5.0))
    delays = [sender.deliver(task_id, n) for n in range(1, 5)]
    assert delays == [2.0, 4.0, 5.0, None]
    events = callback_events(store, task_id)
    assert len(events) == 4 == len(receiver.requests)
    assert not any(e["delivered"] for e in events)
    assert [e["next_attempt_in_s"] for e in events] == [2.0, 4.0, 5.0, None]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_url_is_a_failed_attempt_with_a_coarse_error(store, caplog):
    task_id = finished_task(store, f"http://127.0.0.1:{closed_port()}/hook")
    with caplog.at_level(logging.WARNING, logger="aipy.callbacks"):
        assert CallbackSender(store, local()).deliver(task_id, 1) == 2.0
    [event] = callback_events(store, task_id)
    assert event["delivered"] is False and event["status_code"] is None
    assert event["error"] == "could not connect"  # not "[Errno 111] Connection refused"
    assert "Connection refused" in caplog.text  # the full text is for the operator


def test_tls_failure_is_a_coarse_error(store, receiver):
    task_id = finished_task(store, receiver.url.replace("http://", "https://"))  # it speaks plain HTTP
    assert CallbackSender(store, local()).deliver(task_id, 1) == 2.0
    [event] = callback_events(store, task_id)
    assert event["delivered"] is False and event["status_code"] is None and event["error"] == "TLS failed"


def test_proxy_variables_are_ignored(store, receiver, monkeypatch):
    # A proxy would make the real connection, to an address the guard never sees.
    proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy)
    for name in ("no_proxy", "NO_PROXY"):  # else 127.0.0.1 might bypass the proxy anyway
        monkeypatch.setenv(name, "")
    task_id = finished_task(store, receiver.url)
    assert CallbackSender(store, local()).deliver(task_id, 1) is None
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("exc, error", [
    (ConnectionRefusedError(111, "Connection refused"), "could not connect"),
    (TimeoutError("timed out"), "timed out"),
    (OSError(113, "No route to host"), "connection failed"),
    (ValueError("boom at 10.1.2.3:5432"), "delivery failed"),
])
def test_an_injected_post_failure_is_recorded_coarsely(store, exc, error):
    def post(url, body, headers, timeout_s):
        raise exc

    task_id = finished_task(store, "https://hooks.example.com/x")
    CallbackSender(store, CallbackPolicy(), post=post).deliver(task_id, 1)
    assert callback_events(store, task_id)[0]["error"] == error


def test_redirect_is_not_followed(store, receiver):
    receiver.script = [(302, 0)]
    task_id = finished_task(store, receiver.url)
    assert CallbackSender(store, local()).deliver(task_id, 1) == 2.0
    assert [r["path"] for r in receiver.requests] == ["/hook"]
    [event] = callback_events(store, task_id)
    assert event["delivered"] is False and event["status_code"] == 302 and "HTTP 302" in event["error"]


def test_timeout_is_a_failed_attempt(store, receiver):
    receiver.script = [(200, 1.0)]
    task_id = finished_task(store, receiver.url)
    started = time.monotonic()
    assert CallbackSender(store, local(timeout_s=0.5)).deliver(task_id, 1) == 2.0
    assert time.monotonic() - started < 0.95
    [event] = callback_events(store, task_id)
    assert event["delivered"] is False and event["status_code"] is None
    assert event["error"] == "timed out"


def test_no_callback_url_does_nothing(store, receiver):
    task_id = finished_task(store, None)
    assert CallbackSender(store, local()).deliver(task_id, 1) is None
    assert callback_events(store, task_id) == [] and receiver.requests == []


def test_deleted_task_is_quietly_skipped(store, receiver):
    task_id = finished_task(store, receiver.url)
    store.delete(task_id)
    assert CallbackSender(store, local()).deliver(task_id, 1) is None
    assert receiver.requests == []


def test_credentials_in_url_become_basic_auth_and_are_masked(store, receiver, caplog):
    url = receiver.url.replace("http://", "http://bob:pa%24s@")
    task_id = finished_task(store, url)
    with caplog.at_level(logging.DEBUG):  # httpx logs each request's URL at INFO
        CallbackSender(store, local()).deliver(task_id, 1)
    assert receiver.requests[0]["headers"]["Authorization"] == "Basic Ym9iOnBhJHM="  # bob:pa$s
    [event] = callback_events(store, task_id)
    assert event["url"] == receiver.url.replace("http://", "http://bob:***@")
    assert "bob:***@" in caplog.text and "pa%24s" not in caplog.text and "pa$s" not in caplog.text


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)",
                                 "example.com/hook", "", "mailto:a@example.com"])
def test_check_rejects_non_http_schemes(url):
    assert check_callback_url(url, CallbackPolicy()) == "callback_url: must be an http or https URL"


@pytest.mark.parametrize("url", ["http://", "https:///hook", "http://:80/hook"])
def test_check_requires_a_host(url):
    assert "must name a host" in check_callback_url(url, CallbackPolicy())


def test_check_rejects_bad_ports_and_spaces():
    assert "not a valid URL" in check_callback_url("http://example.com:99999/", CallbackPolicy())
    assert "spaces" in check_callback_url("http://example.com/a b", CallbackPolicy())


def test_check_allow_list_exact_wildcard_and_case():
    policy = CallbackPolicy(allowed_hosts=("n8n.example.com", "*.hooks.example.org", "LOCALHOST"))
    assert check_callback_url("https://n8n.example.com/webhook-waiting/1", policy) is None
    assert check_callback_url("https://N8N.Example.COM/x", policy) is None
    assert check_callback_url("http://localhost:5678/x", policy) is None
    assert check_callback_url("https://a.hooks.example.org/x", policy) is None
    assert check_callback_url("https://a.b.HOOKS.example.org/x", policy) is None
    assert check_callback_url("https://hooks.example.org/x", policy) is not None
    assert check_callback_url("https://evilhooks.example.org/x", policy) is not None
    assert check_callback_url("https://n8n.example.com.evil.com/x", policy) is not None
    assert check_callback_url("https://evil.com/x", policy) == (
        "callback_url: host 'evil.com' is not in the allowed callback hosts (callback_allowed_hosts)")
    assert check_callback_url("https://evil.com/x", CallbackPolicy()) is None


def test_url_refused_at_delivery_is_a_final_failed_attempt(store, receiver):
    task_id = finished_task(store, receiver.url)
    sender = CallbackSender(store, CallbackPolicy(allowed_hosts=("hooks.example.com",)))
    assert sender.deliver(task_id, 1) is None
    assert receiver.requests == []
    [event] = callback_events(store, task_id)
    assert event["delivered"] is False and event["next_attempt_in_s"] is None and event["status_code"] is None
    assert event["error"] == ("refused by policy: host '127.0.0.1' is not in the allowed callback hosts "
                              "(callback_allowed_hosts)")
