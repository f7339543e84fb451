"""Shared fixtures: a fake LLM per test, engines wired to it, event recorders."""

from __future__ import annotations

import threading
import time

import pytest

from agent import Engine, EngineSettings, ProviderSettings, make_provider

from .fake_llm import FakeLLM

#: Every (provider type, protocol) pair the engine supports.
COMBOS = [("openai", "tools"), ("openai", "markdown"), ("anthropic", "tools"), ("anthropic", "markdown")]
COMBO_IDS = [f"{kind}-{protocol}" for kind, protocol in COMBOS]


@pytest.fixture
def fake_llm():
    with FakeLLM() as llm:
        yield llm


def provider_settings(llm: FakeLLM, kind: str, protocol: str = "tools", **changes) -> ProviderSettings:
    base_url = llm.openai_base_url if kind == "openai" else llm.anthropic_base_url
    values = dict(
        type=kind, model=f"fake-{kind}", base_url=base_url, api_key="test-key",
        api_key_env="FAKE_LLM_KEY", protocol=protocol, name=f"fake-{kind}",
    )
    values.update(changes)
    return ProviderSettings(**values)


def fast_settings(**changes) -> EngineSettings:
    """Engine settings tuned for tests: quick retries, short timeouts."""
    values = dict(llm_backoff_s=0.01, llm_timeout_s=10, exec_timeout_s=20)
    values.update(changes)
    return EngineSettings(**values)


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

import requests  # noqa: E402

from . import openapi_check  # noqa: E402

#: LiveServer's default for `refused_uids`: what the real server refuses.
SANDBOX_UIDS = object()


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


def app_config(tmp_path, llm: FakeLLM, *, kind: str = "openai", protocol: str = "tools", engine: dict | None = None, **settings):
    """The service's configuration with its LLM pointed at the fake server,
    its data in `tmp_path`, and quick engine timings."""
    from agent import LLMSettings
    from config import load_config

    overrides = {"data_dir": tmp_path / "data", **settings}
    config = load_config(overrides=overrides)
    config.settings.engine = fast_settings(**(engine or {}))
    providers = {
        "fake": provider_settings(llm, kind, protocol, name="fake"),
        "fake-anthropic": provider_settings(llm, "anthropic", protocol, name="fake-anthropic"),
    }
    config.llm = LLMSettings(default="fake", providers=providers)
    config.role = "You are a test agent."
    return config


class LiveServer:
    """The whole embedded system (store, broker, worker threads) behind
    waitress on a free loopback port, built as the real server is; as root it
    refuses connections from the sandbox's uids unless `refused_uids` says
    otherwise (None: refuse none)."""

    def __init__(self, config, *, workers: bool = True, refused_uids=SANDBOX_UIDS):
        from actors.system import TaskSystem
        from app.factory import create_app
        from app.http_server import build_server
        from app.peers import sandbox_uids_to_refuse

        self.config = config
        self.system = TaskSystem(config)
        self.store = self.system.store
        if workers:
            self.system.start_workers()
        if refused_uids is SANDBOX_UIDS:
            refused_uids = sandbox_uids_to_refuse(config.settings.engine)
        self.server = build_server(create_app(self.system), config.settings, host="127.0.0.1", port=0,
                                   refused_uids=refused_uids, asyncore_loop_timeout=0.05)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.serving = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        token = config.settings.api_token
        openapi_check.set_token(self.url, token.get_secret_value() if token else None)
        openapi_check.register(self.url)

    def _serve(self) -> None:
        # Closing waitress from another thread races its poll loop, so the
        # loop runs here in short turns and the server closes in this thread.
        while self.serving:
            self.server.asyncore.loop(timeout=0.05, map=self.server._map, count=1, use_poll=True)
        self.server.close()

    def submit(self, instruction: str = "do it", **fields) -> str:
        response = requests.post(f"{self.url}/tasks", json={"instruction": instruction, **fields}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["task_id"]

    def wait_for(self, task_id: str, *statuses: str, timeout: float = 15) -> dict:
        statuses = statuses or ("completed", "error", "cancelled")
        deadline = time.monotonic() + timeout
        while True:
            task = requests.get(f"{self.url}/tasks/{task_id}", timeout=10).json()
            if task["status"] in statuses:
                return task
            assert time.monotonic() < deadline, f"task {task_id} still {task['status']}"
            time.sleep(0.02)

    def stop(self) -> None:
        openapi_check.unregister(self.url)
        self.serving = False
        self.thread.join(5)
        self.system.stop(timeout_s=5)


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
