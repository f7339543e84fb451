"""The Python SDK (`sdk/`) against a live server over real HTTP, with the fake LLM."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid

import httpx
import pytest
from httpx_sse import EventSource

from sdk import (
    AgentClient,
    AgentError,
    AsyncAgentClient,
    BadRequest,
    CallbackDelivery,
    ConnectionFailed,
    Event,
    NotFound,
    Task,
    TaskOutput,
    TaskPage,
    TaskResult,
    TaskTimeout,
    Unauthorized,
)
from sdk._common import STREAM_RECONNECTS, StreamState

from .fake_llm import Block, Reply

#: A block that runs for about a second, saying so before and after.
SLOW_BLOCK = "import time\nprint('tick', flush=True)\ntime.sleep(1.0)\nprint('tock')\n"
EVENT_TYPES = ["task_start", "llm_response", "exec_start", "exec_result", "llm_response", "task_end"]


def slow_task(fake_llm) -> None:
    fake_llm.script(Reply("Working.", blocks=[Block("python", SLOW_BLOCK)]), Reply("Finished."))


class Recording(httpx.HTTPTransport):
    """A real transport that keeps every request it sent."""

    def __init__(self):
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)

    def sent(self, method: str, suffix: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.endswith(suffix)]


class CutStream(httpx.SyncByteStream):
    """The body of an event stream, cut off like a dropped connection right
    after its first `events` events."""

    def __init__(self, stream, events: int):
        self.stream, self.events = stream, events

    def __iter__(self):
        received = b""
        for chunk in self.stream:
            received += chunk
            blocks = [b for b in received.split(b"\n\n")[:-1] if not b.startswith(b":")]
            if len(blocks) >= self.events:
                yield b"\n\n".join(blocks[:self.events]) + b"\n\n"
                break
        self.stream.close()
        raise httpx.ReadError("connection reset (test)")


class DropFirstStream(Recording):
    """Cuts the first event stream after `events` events; later ones pass."""

    def __init__(self, events: int):
        super().__init__()
        self.events = events
        self.cut = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.cut or not request.url.path.endswith("/events"):
            return response
        self.cut = True
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=CutStream(response.stream, self.events), request=request)


@pytest.fixture
def client(server):
    with AgentClient(server.url) as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- tasks -----------------------------------------------------------------------

def test_submit_wait_and_read_a_task(client, fake_llm):
    fake_llm.script(Reply("Counting.", blocks=[Block("python", "print(6 * 7)", name="count.py")]), Reply("It is 42."))
    submission = client.submit_task("compute", {"source": "sdk"}, max_rounds=4)
    assert submission.status == "pending" and uuid.UUID(submission.task_id)

    result = client.wait_for_completion(submission.task_id, timeout=15)
    assert isinstance(result, TaskResult) and result.status == "completed" and result.finished
    assert result.answer == "It is 42." and result.output.answer == "It is 42."
    assert result.output.metadata["source"] == "sdk" and result.output.metadata["instruction"] == "compute"
    assert [m.type for m in result.output.messages] == EVENT_TYPES
    [block] = result.output.results
    assert (block.block_name, block.language, block.status) == ("count.py", "python", "success")
    assert "42" in block.output
    assert result.raw["task_id"] == submission.task_id and result.output.callback is None

    task = client.get_task(submission.task_id)
    assert isinstance(task, Task) and task.status == "completed" and task.error is None and task.completed_at
    assert client.get_result(submission.task_id).output.results == result.output.results


def test_list_tasks_pages_newest_first(client, fake_llm):
    fake_llm.script(Reply("One."), Reply("Two."))
    first = client.run_task("first", timeout=15)
    second = client.run_task("second", timeout=15)
    page = client.list_tasks()
    assert isinstance(page, TaskPage) and [t.task_id for t in page] == [second.task_id, first.task_id]
    assert page.total == 2 and len(page) == 2
    page = client.list_tasks(status="completed", limit=1, offset=1)
    assert [t.task_id for t in page.tasks] == [first.task_id] and (page.limit, page.offset) == (1, 1)
    assert client.list_tasks(status="running").tasks == ()


def test_run_task_answers_with_one_request_when_the_task_is_quick(server, fake_llm):
    fake_llm.script(Reply("Done at once."))
    transport = Recording()
    with AgentClient(server.url, transport=transport) as client:
        result = client.run_task("quick", {"k": 1}, timeout=15)
    assert result.status == "completed" and result.answer == "Done at once."
    assert [r.method for r in transport.requests] == ["POST"]


def test_per_task_options_are_sent_and_checked(client, fake_llm):
    with pytest.raises(BadRequest) as caught:
        client.submit_task("x", llm="no-such-provider")
    assert caught.value.status_code == 400 and "llm: unknown provider 'no-such-provider'" in caught.value.detail
    fake_llm.script(Reply("Again.", blocks=[Block("python", "print(1)")]))
    result = client.run_task("loop", max_rounds=1, timeout=15)
    assert result.status == "error" and result.error


def test_idempotency_key_returns_the_first_task(client, fake_llm):
    fake_llm.script(Reply("Once."))
    first = client.submit_task("once", idempotency_key="order-17")
    again = client.submit_task("once", idempotency_key="order-17")
    assert again.task_id == first.task_id


def test_cancel_a_running_task(client, fake_llm):
    fake_llm.script(Reply("Sleeping.", blocks=[Block("python", "import time; time.sleep(30)")]))
    task_id = client.submit_task("sleep").task_id
    for event in client.stream_events(task_id):
        if event.type == "exec_start":
            break
    cancellation = client.cancel_task(task_id)
    assert cancellation.task_id == task_id and cancellation.status == "cancelled"
    assert cancellation.message == f"Task {task_id} cancelled"
    assert client.wait_for_completion(task_id, timeout=10).status == "cancelled"


def test_cancel_finished_task_is_bad_request_with_the_servers_detail(client, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = client.run_task("quick", timeout=15).task_id
    with pytest.raises(BadRequest) as caught:
        client.cancel_task(task_id)
    assert caught.value.detail == f"Task {task_id} is already completed and cannot be cancelled"
    assert caught.value.response.status_code == 400


@pytest.mark.parametrize("call", ["get_task", "get_result", "cancel_task", "list_files", "wait_for_completion"])
def test_unknown_task_is_not_found_with_the_servers_detail(client, call):
    task_id = str(uuid.uuid4())
    with pytest.raises(NotFound) as caught:
        getattr(client, call)(task_id)
    assert caught.value.status_code == 404 and caught.value.detail == f"Task {task_id} not found"
    assert isinstance(caught.value, AgentError) and task_id in str(caught.value)


def test_unreachable_server_is_connection_failed():
    with AgentClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        with pytest.raises(ConnectionFailed):
            client.get_task("x")
        with pytest.raises(ConnectionFailed):
            list(client.stream_events("x"))


# -- waiting -------------------------------------------------------------------------

def test_wait_for_completion_waits_on_the_server_instead_of_polling(server, fake_llm):
    slow_task(fake_llm)
    transport = Recording()
    with AgentClient(server.url, transport=transport) as client:
        task_id = client.submit_task("slow").task_id
        result = client.wait_for_completion(task_id, timeout=20)
    assert result.status == "completed" and result.answer == "Finished."
    waits = transport.sent("GET", "/result")
    assert len(waits) == 1 and 19 < float(waits[0].url.params["wait"]) <= 20


def test_wait_for_completion_repeats_waits_the_server_caps(start_server, fake_llm):
    server = start_server(max_wait_s=0.3)
    slow_task(fake_llm)
    transport = Recording()
    with AgentClient(server.url, transport=transport) as client:
        task_id = client.submit_task("slow").task_id
        result = client.wait_for_completion(task_id, timeout=20)
    assert result.status == "completed"
    assert 2 <= len(transport.sent("GET", "/result")) <= 10  # about one per 0.3 s, not dozens


def test_wait_for_completion_times_out(client, fake_llm):
    fake_llm.script(Reply("Sleeping.", blocks=[Block("python", "import time; time.sleep(30)")]))
    task_id = client.submit_task("sleep").task_id
    started = time.monotonic()
    with pytest.raises(TaskTimeout) as caught:
        client.wait_for_completion(task_id, timeout=0.5)
    assert 0.4 < time.monotonic() - started < 3
    assert isinstance(caught.value, TimeoutError) and caught.value.task_id == task_id
    assert caught.value.status in ("pending", "running")
    client.cancel_task(task_id)


def test_run_task_times_out_but_the_task_goes_on(client, fake_llm):
    slow_task(fake_llm)
    with pytest.raises(TaskTimeout) as caught:
        client.run_task("slow", timeout=0.3)
    assert client.wait_for_completion(caught.value.task_id, timeout=15).status == "completed"


# -- events ---------------------------------------------------------------------------

def test_stream_events_arrive_in_order_while_the_task_runs(client, fake_llm):
    slow_task(fake_llm)
    task_id = client.submit_task("slow").task_id
    arrivals = [(event, time.monotonic()) for event in client.stream_events(task_id)]
    events = [event for event, _ in arrivals]
    assert [e.type for e in events] == EVENT_TYPES and [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(e, Event) and e.timestamp for e in events)
    assert events[2].content["language"] == "python" and events[3].content["result"]["status"] == "success"
    assert arrivals[3][1] - arrivals[2][1] > 0.8  # exec_start came before the block had finished
    assert events[-1].content["status"] == "completed"


def test_stream_events_after_a_seq(client, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = client.run_task("quick", timeout=15).task_id
    assert [(e.seq, e.type) for e in client.stream_events(task_id, after=1)] == [(2, "llm_response"), (3, "task_end")]


def test_stream_events_resume_after_a_dropped_connection(server, fake_llm):
    slow_task(fake_llm)
    transport = DropFirstStream(events=2)
    with AgentClient(server.url, transport=transport) as client:
        task_id = client.submit_task("slow").task_id
        events = list(client.stream_events(task_id))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6] and events[-1].type == "task_end"
    first, second = transport.sent("GET", "/events")
    assert "Last-Event-ID" not in first.headers and second.headers["Last-Event-ID"] == "2"


def test_stream_of_an_unknown_task_is_not_found(client):
    with pytest.raises(NotFound, match="not found"):
        list(client.stream_events(str(uuid.uuid4())))


# -- files and service ------------------------------------------------------------------

def test_list_and_download_the_files_a_task_made(client, fake_llm, tmp_path):
    code = "import os\nos.makedirs('out', exist_ok=True)\nopen('out/report.csv', 'w').write('a,b\\n1,2\\n')\n"
    fake_llm.script(Reply("Writing.", blocks=[Block("python", code)]), Reply("Wrote out/report.csv."))
    task_id = client.run_task("write a report", timeout=15).task_id
    files = {f.path: f for f in client.list_files(task_id)}
    assert files["out/report.csv"].size == 8 and files["out/report.csv"].modified
    assert client.download_file(task_id, "out/report.csv") == b"a,b\n1,2\n"
    saved = client.download_file_to(task_id, "out/report.csv", tmp_path)
    assert saved == tmp_path / "report.csv" and saved.read_bytes() == b"a,b\n1,2\n"
    assert client.download_file_to(task_id, "out/report.csv", tmp_path / "copy.csv").read_bytes() == b"a,b\n1,2\n"
    with pytest.raises(NotFound, match="has no file"):
        client.download_file_to(task_id, "missing.txt", tmp_path / "missing.txt")
    assert not (tmp_path / "missing.txt").exists() and not list(tmp_path.glob(".*.part"))


def test_health_and_cleanup(client, fake_llm):
    health = client.health()
    assert health["status"] == "healthy" and health["storage"] == "ok"
    fake_llm.script(Reply("Done."))
    task_id = client.run_task("quick", timeout=15).task_id
    assert client.cleanup(max_age_hours=24) == "Cleaned up 0 tasks"
    assert client.cleanup(max_age_hours=0) == "Cleaned up 1 tasks"
    with pytest.raises(NotFound):
        client.get_task(task_id)


# -- auth ---------------------------------------------------------------------------------

@pytest.fixture
def secured_server(start_server):
    return start_server(api_token="s3cret")


def test_token_is_sent_as_bearer(secured_server, fake_llm):
    fake_llm.script(Reply("Done."))
    with AgentClient(secured_server.url, token="s3cret") as client:
        assert client.run_task("quick", timeout=15).status == "completed"
    with AgentClient(secured_server.url) as client:
        assert client.health()["status"] == "healthy"  # the health check needs no token
        with pytest.raises(Unauthorized) as caught:
            client.list_tasks()
    assert caught.value.status_code == 401 and "Authorization: Bearer" in caught.value.detail
    with AgentClient(secured_server.url, token="wrong") as client:
        with pytest.raises(Unauthorized):
            list(client.stream_events(str(uuid.uuid4())))


# -- async ----------------------------------------------------------------------------------

def test_async_client_mirrors_the_sync_one():
    public = {name for name in dir(AgentClient) if not name.startswith("_")} - {"close"}
    assert public <= set(dir(AsyncAgentClient)) and hasattr(AsyncAgentClient, "aclose")


def test_async_client_runs_streams_and_reads_tasks(server, fake_llm, tmp_path):
    slow_task(fake_llm)
    fake_llm.script(Reply("Writing.", blocks=[Block("python", "open('a.txt', 'w').write('hi')")]), Reply("Done."))

    async def scenario():
        async with AsyncAgentClient(server.url) as client:
            task_id = (await client.submit_task("slow", {"via": "async"})).task_id
            events = [event async for event in client.stream_events(task_id)]
            result = await client.wait_for_completion(task_id, timeout=15)
            other = await client.run_task("file", timeout=15)
            files = await client.list_files(other.task_id)
            data = await client.download_file(other.task_id, "a.txt")
            saved = await client.download_file_to(other.task_id, "a.txt", tmp_path)
            page = await client.list_tasks(limit=5)
            with pytest.raises(BadRequest):
                await client.cancel_task(task_id)
            with pytest.raises(NotFound):
                await client.get_task(str(uuid.uuid4()))
            return events, result, files, data, saved, page, await client.health(), await client.cleanup(24)

    events, result, files, data, saved, page, health, cleaned = asyncio.run(scenario())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6] and events[-1].type == "task_end"
    assert result.status == "completed" and result.output.metadata["via"] == "async"
    assert [f.path for f in files] == ["a.txt"] and data == b"hi" and saved.read_bytes() == b"hi"
    assert page.total == 2 and health["status"] == "healthy" and cleaned == "Cleaned up 0 tasks"


def test_async_wait_times_out_without_polling(server, fake_llm):
    fake_llm.script(Reply("Sleeping.", blocks=[Block("python", "import time; time.sleep(30)")]))
    sent: list[httpx.Request] = []

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request):
            sent.append(request)
            return await super().handle_async_request(request)

    async def scenario():
        async with AsyncAgentClient(server.url, transport=Counting()) as client:
            task_id = (await client.submit_task("sleep")).task_id
            try:
                await client.wait_for_completion(task_id, timeout=0.6, wait_step=0.2)
            finally:
                await client.cancel_task(task_id)

    with pytest.raises(TaskTimeout):
        asyncio.run(scenario())
    assert 2 <= len([r for r in sent if r.url.path.endswith("/result")]) <= 5


# -- the event stream's wire format, reconnects and the types, without a server --------------------

class Trickle(httpx.SyncByteStream):
    """A body sent `size` bytes at a time."""

    def __init__(self, body: bytes, size: int):
        self.body, self.size = body, size

    def __iter__(self):
        for start in range(0, len(self.body), self.size):
            yield self.body[start:start + self.size]


def answering(body: bytes, content_type: str = "text/event-stream", size: int = 1) -> httpx.MockTransport:
    """A transport that answers every request with `body`, sent in pieces of `size` bytes."""
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, headers={"Content-Type": content_type}, stream=Trickle(body, size))

    transport = httpx.MockTransport(handle)
    transport.requests = sent
    return transport


def sse(seq: int, kind: str, content: dict, end: str = "\n") -> str:
    data = json.dumps({"seq": seq, "type": kind, "content": content}, ensure_ascii=False)
    return f"id: {seq}{end}event: {kind}{end}data: {data}{end}{end}"


@pytest.mark.parametrize("size", [1, 2, 7, 4096])
def test_stream_events_read_any_chunking_and_line_ending(size):
    body = (": keepalive\r\n\r\n" + sse(1, "task_start", {"instruction": "a\u2028b"}, "\r\n")
            + ": keepalive\n\n" + sse(1, "task_start", {}, "\r") + sse(2, "task_end", {"status": "completed"}, "\r"))
    with AgentClient("http://agent.test", transport=answering(body.encode(), size=size)) as client:
        events = list(client.stream_events("t"))
    assert [(e.seq, e.type) for e in events] == [(1, "task_start"), (2, "task_end")]  # the repeat is skipped
    assert events[0].content["instruction"] == "a\u2028b"  # a Unicode line break is not an SSE one


def test_an_answer_that_is_not_an_event_stream_fails_at_once():
    transport = answering(b"<html>log in first</html>", content_type="text/html")
    with AgentClient("http://agent.test", transport=transport) as client:
        with pytest.raises(AgentError, match="without an event stream") as caught:
            list(client.stream_events("t"))
    assert not isinstance(caught.value, ConnectionFailed) and len(transport.requests) == 1


def test_reconnects_back_off_start_over_after_an_event_and_give_up():
    state = StreamState("t", 0, "http://agent.test")
    with pytest.raises(ConnectionFailed, match="no answer from http://agent.test"):
        state.dropped(httpx.ConnectError("refused"))  # never connected: the server is not there
    state.connected = True
    assert [state.dropped(None) for _ in range(3)] == pytest.approx([0.1, 0.4, 1.6])
    state.accept(next(iter_sse(sse(1, "task_start", {}))))
    pauses = [state.dropped(httpx.ReadError("reset")) for _ in range(STREAM_RECONNECTS)]
    assert pauses == pytest.approx([0.1, 0.4, 1.6, 4.0, 4.0])
    with pytest.raises(ConnectionFailed, match="event stream of task t lost: reset"):
        state.dropped(httpx.ReadError("reset"))


def iter_sse(text: str):
    response = httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=text.encode())
    return EventSource(response).iter_sse()


def test_types_ignore_unknown_fields_and_keep_the_raw_json():
    data = {"task_id": "t", "status": "completed", "instruction": "i", "created_at": "c", "shiny": True,
            "output": {"messages": [{"type": "task_end", "content": {"answer": "A"}, "timestamp": "z", "new": 1}],
                       "answer": "A", "later": []}}
    result = TaskResult.from_json(data)
    assert result.finished and result.answer == "A" and result.raw["shiny"] is True
    assert result.output.messages[0].seq is None and result.output.results == () and result.output.raw["later"] == []
    assert Task.from_json({"task_id": "t"}).status == "pending"
    page = TaskPage.from_json({"tasks": {"a": {"status": "running"}}, "total": 3})
    assert page.tasks[0].task_id == "a" and page.total == 3


def test_the_callbacks_delivery_is_typed():
    summary = {"url": "http://n8n:***@hooks.test/x", "state": "retrying", "attempts": 1, "delivered": False,
               "status_code": 500, "error": "HTTP 500", "last_attempt_at": "2024-01-01T12:00:05.123Z",
               "next_attempt_at": "2024-01-01T12:00:35.123Z"}
    callback = TaskOutput.from_json({"callback": summary}).callback
    assert isinstance(callback, CallbackDelivery) and callback.raw == summary
    assert (callback.state, callback.attempts, callback.delivered, callback.status_code, callback.error) == (
        "retrying", 1, False, 500, "HTTP 500")
    assert callback.next_attempt_at == "2024-01-01T12:00:35.123Z" and callback.url.startswith("http://n8n:***@")
    assert TaskOutput.from_json({"callback": None}).callback is None
