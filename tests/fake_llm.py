"""A scripted fake LLM server speaking the real OpenAI and Anthropic wire formats.

Why a real HTTP server instead of mocking the SDKs: the service under test builds
its own ``openai.OpenAI`` / ``anthropic.Anthropic`` clients, so the only seam that
exercises retries, streaming parsers, error mapping and auth headers exactly as in
production is the network. Everything here is stdlib and binds to 127.0.0.1 only.

Usage::

    with FakeLLM() as llm:
        llm.script(Reply("hi", blocks=[Block("python", "print(1)")]))
        client = openai.OpenAI(api_key="test-key", base_url=llm.openai_base_url)
"""
from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

PIECE = 16  # characters per streamed text / JSON fragment, small so streams have several chunks
TOOL_NAME = "execute"


@dataclass
class Block:
    """Code the fake model asks to run."""

    language: str
    code: str
    name: str | None = None


@dataclass
class Reply:
    """One scripted model reply; answers exactly one HTTP request."""

    text: str = ""
    blocks: list[Block] = field(default_factory=list)
    status: int = 200  # != 200 -> error response in the provider's error JSON format
    chunk_delay_s: float = 0.0  # sleep between streamed chunks
    delay_s: float = 0.0  # sleep before sending response headers
    input_tokens: int = 10
    output_tokens: int = 5


def _uid() -> str:
    return uuid.uuid4().hex[:24]


def _pieces(s: str) -> list[str]:
    return [s[i:i + PIECE] for i in range(0, len(s), PIECE)]


def _tool_args(b: Block) -> dict[str, Any]:
    args = {"language": b.language, "code": b.code}
    return args if b.name is None else {**args, "name": b.name}


def _fence(b: Block) -> str:
    info = f"{b.language} {b.name}" if b.name else b.language
    code = b.code.rstrip("\n")
    return f"```{info}\n{code}\n```"


def _render(reply: Reply, body: dict) -> tuple[str, list[dict[str, Any]]]:
    """Like a real model: native tool calls when tools were offered, else fenced markdown."""
    if body.get("tools"):
        return reply.text, [_tool_args(b) for b in reply.blocks]
    parts = [reply.text] if reply.text else []
    return "\n\n".join(parts + [_fence(b) for b in reply.blocks]), []


_MESSAGES = {401: "Incorrect API key provided", 429: "fake rate limit", 500: "fake server error"}
_OPENAI_ERR = {401: ("invalid_request_error", "invalid_api_key"), 429: ("requests", "rate_limit_exceeded")}
_ANTHROPIC_ERR = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                  404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                  529: "overloaded_error"}


def _openai_error(status: int, message: str) -> dict:
    etype, code = _OPENAI_ERR.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def _anthropic_error(status: int, message: str) -> dict:
    etype = _ANTHROPIC_ERR.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": etype, "message": message}}


def _openai_completion(model: str, text: str, calls: list[dict], r: Reply) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = [{"id": f"call_{_uid()}", "type": "function",
                                  "function": {"name": TOOL_NAME, "arguments": json.dumps(a)}} for a in calls]
    return {"id": f"chatcmpl-{_uid()}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens,
                      "total_tokens": r.input_tokens + r.output_tokens}}


def _openai_chunks(model: str, text: str, calls: list[dict], r: Reply, usage: bool) -> Iterator[bytes]:
    """Chat-completion chunks in the order OpenAI sends them, as SSE ``data:`` lines."""
    base = {"id": f"chatcmpl-{_uid()}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, **({"usage": None} if usage else {})}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        obj = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return f"data: {json.dumps(obj)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""})
    for piece in _pieces(text):
        yield chunk({"content": piece})
    for i, args in enumerate(calls):
        yield chunk({"tool_calls": [{"index": i, "id": f"call_{_uid()}", "type": "function",
                                     "function": {"name": TOOL_NAME, "arguments": ""}}]})
        for frag in _pieces(json.dumps(args)):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]})
    yield chunk({}, "tool_calls" if calls else "stop")
    if usage:
        u = {"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens,
             "total_tokens": r.input_tokens + r.output_tokens}
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': u})}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _anthropic_message(model: str, text: str, calls: list[dict], r: Reply) -> dict:
    content: list[dict] = [{"type": "text", "text": text}] if text or not calls else []
    content += [{"type": "tool_use", "id": f"toolu_{_uid()}", "name": TOOL_NAME, "input": a} for a in calls]
    return {"id": f"msg_{_uid()}", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": r.input_tokens, "output_tokens": r.output_tokens}}


def _anthropic_events(model: str, text: str, calls: list[dict], r: Reply) -> Iterator[bytes]:
    """The Messages streaming event sequence, each as ``event:``/``data:`` SSE lines."""
    full = _anthropic_message(model, text, calls, r)
    start = {**full, "content": [], "stop_reason": None,
             "usage": {"input_tokens": r.input_tokens, "output_tokens": 1}}
    events: list[dict] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for i, block in enumerate(full["content"]):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            events += [{"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": p}}
                       for p in _pieces(block["text"])]
        else:
            events.append({"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}})
            events += [{"type": "content_block_delta", "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": p}}
                       for p in _pieces(json.dumps(block["input"]))]
        events.append({"type": "content_block_stop", "index": i})
    events.append({"type": "message_delta", "delta": {"stop_reason": full["stop_reason"], "stop_sequence": None},
                   "usage": {"output_tokens": r.output_tokens}})
    events.append({"type": "message_stop"})
    for ev in events:
        yield f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n".encode()


class _Server(ThreadingHTTPServer):
    # Don't join handler threads on close: idle keep-alive connections would block stop().
    daemon_threads = True
    block_on_close = False
    fake: FakeLLM

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # client went away: not our problem
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.fake._track(self.connection, add=False)
        super().finish()

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        try:
            self._serve()
        except ConnectionError:  # client disconnected (e.g. mid-stream): stop quietly
            self.close_connection = True

    def _serve(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake._record({"path": self.path, "headers": headers, "body": body})
        route = urlsplit(self.path).path.rstrip("/")
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if route == "/v1/chat/completions":
            error, api_key = _openai_error, bearer
        elif route == "/v1/messages":  # anthropic SDK 2.x sends the key as a Bearer token, older ones as x-api-key
            error, api_key = _anthropic_error, headers.get("x-api-key") or bearer
        else:
            return self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        if api_key != fake.api_key:
            return self._json(401, error(401, _MESSAGES[401]))
        if not isinstance(body, dict):
            return self._json(400, error(400, "request body is not a JSON object"))
        try:
            reply = fake._next_reply(body)
        except Exception as exc:  # a broken responder must fail the test loudly, not hang it
            return self._json(500, error(500, f"fake LLM responder raised: {exc!r}"))
        if reply is None:
            return self._json(500, error(500, "fake LLM: no scripted reply left"))
        time.sleep(reply.delay_s)
        if reply.status != 200:
            return self._json(reply.status, error(reply.status, _MESSAGES.get(reply.status, f"fake error {reply.status}")))
        model = str(body.get("model", "fake-model"))
        text, calls = _render(reply, body)
        stream = bool(body.get("stream"))
        if route == "/v1/messages":
            if stream:
                return self._stream(_anthropic_events(model, text, calls, reply), reply.chunk_delay_s)
            return self._json(200, _anthropic_message(model, text, calls, reply))
        if stream:
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return self._stream(_openai_chunks(model, text, calls, reply, usage), reply.chunk_delay_s)
        return self._json(200, _openai_completion(model, text, calls, reply))

    def _json(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, chunks: Iterator[bytes], delay: float) -> None:
        """SSE body delimited by closing the connection: simplest framing both SDKs accept."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for i, data in enumerate(chunks):
            if i and delay:
                time.sleep(delay)
            self.wfile.write(data)
            self.wfile.flush()


class FakeLLM:
    """Scripted fake LLM on a free loopback port; see the module docstring."""

    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.responder: Callable[[dict], Reply] | None = None
        self.requests: list[dict] = []
        self.port = 0
        self._queues: dict[str | None, deque[Reply]] = {None: deque()}
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeLLM:
        if self._server is None:
            self._server = _Server(("127.0.0.1", 0), _Handler)
            self._server.fake = self
            self.port = self._server.server_address[1]
            # A short poll interval keeps stop() (and thus every test's teardown) fast.
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                            name=f"fake-llm-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open connections, so pooled SDK connections can't reach a zombie handler."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *replies: Reply, model: str | None = None) -> None:
        """Queue replies for requests naming ``model`` (None: the default queue used as fallback)."""
        with self._lock:
            self._queues.setdefault(model, deque()).extend(replies)

    def requests_for(self, model: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if isinstance(r["body"], dict) and r["body"].get("model") == model]

    def _record(self, request: dict) -> None:
        with self._lock:
            self.requests.append(request)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _next_reply(self, body: dict) -> Reply | None:
        with self._lock:
            responder = self.responder
            if responder is None:
                queue = self._queues.get(body.get("model")) or self._queues[None]
                return queue.popleft() if queue else None
        return responder(body)
