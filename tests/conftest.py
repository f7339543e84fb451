"""Shared fixtures: a fake LLM per test, engines wired to it, event
recorders, live servers (built by live_server.py) and a real redis-server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from agent import Engine, make_provider

from . import openapi_check
from .fake_llm import FakeLLM
from .live_server import ROOT, SANDBOX_UIDS, LiveServer, app_config, fast_settings, provider_settings, service_env
from .redis_server import free_port

#: Every (provider type, protocol) pair the engine supports.
COMBOS = [("openai", "tools"), ("openai", "markdown"), ("anthropic", "tools"), ("anthropic", "markdown")]
COMBO_IDS = [f"{kind}-{protocol}" for kind, protocol in COMBOS]


@pytest.fixture
def fake_llm():
    with FakeLLM() as llm:
        yield llm


def make_engine(llm: FakeLLM, kind: str, protocol: str = "tools", *, role: str = "", provider: dict | None = None, **settings) -> Engine:
    ps = provider_settings(llm, kind, protocol, **(provider or {}))
    es = fast_settings(**settings)
    return Engine(make_provider(ps, es.llm_timeout_s), es, role=role)


class Recorder:
    """An event sink that keeps every event with the time it arrived."""

    def __init__(self):
        self.events: list[tuple[str, dict, float]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, content: dict) -> None:
        with self.lock:
            self.events.append((kind, content, time.monotonic()))

    def types(self) -> list[str]:
        return [kind for kind, _, _ in self.events]

    def of(self, kind: str) -> list[dict]:
        return [content for k, content, _ in self.events if k == kind]

    def last(self, kind: str) -> dict:
        return self.of(kind)[-1]

    def seen(self, kind: str) -> bool:
        return any(k == kind for k, _, _ in self.events)


@pytest.fixture
def recorder():
    return Recorder()


# -- a live server over real HTTP, in embedded mode ---------------------------


@pytest.fixture(autouse=True)
def responses_match_the_openapi_document(monkeypatch):
    """Every response of a live test server is checked against its OpenAPI
    document (see openapi_check.py)."""
    send = requests.Session.send

    def checked_send(self, request, **kwargs):
        response = send(self, request, **kwargs)
        if not kwargs.get("stream"):
            openapi_check.check(response)
        return response

    monkeypatch.setattr(requests.Session, "send", checked_send)


@pytest.fixture
def start_server(tmp_path, fake_llm):
    """Start a live server with settings changed as given; stopped after the test."""
    started: list[LiveServer] = []

    def start(*, workers: bool = True, refused_uids=SANDBOX_UIDS, **settings) -> LiveServer:
        server = LiveServer(app_config(tmp_path, fake_llm, **settings), workers=workers, refused_uids=refused_uids)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server) -> LiveServer:
    return start_server()


@pytest.fixture
def redis_server(tmp_path):
    from .redis_server import RedisServer

    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def procfile(tmp_path, redis_server, fake_llm):
    """The Procfile's processes under honcho over `redis_server`, configured
    by environment only: (url, data folder, honcho's process), its output in
    `tmp_path`/honcho.log. Skips where honcho is not installed."""
    honcho = shutil.which("honcho") or pytest.skip("honcho is not installed (pip install honcho)")
    port = free_port()
    data = tmp_path / "data"
    env = service_env(fake_llm, PORT=str(port), REDIS_URL=redis_server.url, AIPYTHON_DATA_DIR=str(data),
                      AIPYTHON_WORKERS="2", AIPYTHON_CLEANUP_INTERVAL_MINUTES="60")
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}"  # the Procfile runs `python`
    with open(tmp_path / "honcho.log", "w") as log:
        process = subprocess.Popen([honcho, "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", data, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
