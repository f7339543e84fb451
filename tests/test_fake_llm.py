"""The fake LLM must be indistinguishable from the real APIs for the official SDK clients."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Iterator

import anthropic
import openai
import pytest

from tests.fake_llm import Block, FakeLLM, Reply
from tests.polling import wait_until

OPENAI_TOOLS = [{"type": "function", "function": {
    "name": "execute", "description": "run code",
    "parameters": {"type": "object", "properties": {"language": {"type": "string"}, "code": {"type": "string"}}}}}]
ANTHROPIC_TOOLS = [{"name": "execute", "description": "run code",
                    "input_schema": {"type": "object", "properties": {"code": {"type": "string"}}}}]
MSGS = [{"role": "user", "content": "count lines"}]
LONG_TEXT = "I will count the lines of the file for you now."  # several 16-char pieces
BLOCKS = [Block("python", "print(len(open('f').readlines()))", "count_lines.py"), Block("bash", "wc -l f")]
ARGS = [{"language": "python", "code": "print(len(open('f').readlines()))", "name": "count_lines.py"},
        {"language": "bash", "code": "wc -l f"}]


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


def oai(llm: FakeLLM, key: str = "test-key", **kw: object) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=llm.openai_base_url, max_retries=0, **kw)


def ant(llm: FakeLLM, key: str = "test-key") -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=llm.anthropic_base_url, max_retries=0)


def test_openai_non_stream_text(llm: FakeLLM) -> None:
    llm.script(Reply("hello", input_tokens=7, output_tokens=3))
    resp = oai(llm).chat.completions.create(model="gpt-x", messages=MSGS)
    assert resp.object == "chat.completion" and resp.model == "gpt-x"
    assert resp.choices[0].message.content == "hello"
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (7, 3, 10)


def test_openai_non_stream_tool_calls(llm: FakeLLM) -> None:
    llm.script(Reply("running", blocks=BLOCKS))
    resp = oai(llm).chat.completions.create(model="gpt-x", messages=MSGS, tools=OPENAI_TOOLS)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "running"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["execute", "execute"]
    assert [json.loads(c.function.arguments) for c in calls] == ARGS
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id


def test_markdown_when_no_tools(llm: FakeLLM) -> None:
    llm.script(Reply("Here:", blocks=BLOCKS[:1]), Reply(blocks=BLOCKS[1:]))
    first = oai(llm).chat.completions.create(model="gpt-x", messages=MSGS).choices[0].message.content
    assert first == "Here:\n\n```python count_lines.py\nprint(len(open('f').readlines()))\n```"
    msg = ant(llm).messages.create(model="claude-x", max_tokens=100, messages=MSGS)
    assert msg.content[0].text == "```bash\nwc -l f\n```" and msg.stop_reason == "end_turn"


def test_openai_stream_text_tools_usage(llm: FakeLLM) -> None:
    llm.script(Reply(LONG_TEXT, blocks=BLOCKS, input_tokens=11, output_tokens=22))
    stream = oai(llm).chat.completions.create(model="gpt-x", messages=MSGS, tools=OPENAI_TOOLS, stream=True,
                                              stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text_chunks = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(text_chunks) >= 3 and "".join(text_chunks) == LONG_TEXT
    calls: dict[int, dict] = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            acc = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "args": ""})
            acc["args"] += tc.function.arguments or ""
    assert [calls[i]["name"] for i in sorted(calls)] == ["execute", "execute"]
    assert [json.loads(calls[i]["args"]) for i in sorted(calls)] == ARGS
    assert all(calls[i]["id"].startswith("call_") for i in calls)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 33


def test_openai_stream_without_usage_option(llm: FakeLLM) -> None:
    llm.script(Reply("short"))
    chunks = list(oai(llm).chat.completions.create(model="gpt-x", messages=MSGS, stream=True))
    assert all(c.choices for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "short"


def test_anthropic_non_stream(llm: FakeLLM) -> None:
    llm.script(Reply("running", blocks=BLOCKS, input_tokens=4, output_tokens=9))
    msg = ant(llm).messages.create(model="claude-x", max_tokens=100, messages=MSGS, tools=ANTHROPIC_TOOLS)
    assert msg.id.startswith("msg_") and msg.role == "assistant" and msg.model == "claude-x"
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use", "tool_use"]
    assert msg.content[0].text == "running"
    assert [b.input for b in msg.content[1:]] == ARGS and msg.content[1].name == "execute"
    assert msg.content[1].id.startswith("toolu_")
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (4, 9)


def test_anthropic_stream_raw_events(llm: FakeLLM) -> None:
    llm.script(Reply(LONG_TEXT, blocks=BLOCKS, output_tokens=8))
    events = list(ant(llm).messages.create(model="claude-x", max_tokens=100, messages=MSGS,
                                           tools=ANTHROPIC_TOOLS, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert events[0].message.usage.input_tokens == 10
    texts = [e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"]
    assert len(texts) >= 3 and "".join(texts) == LONG_TEXT
    tool_json: dict[int, str] = {}
    for e in events:
        if e.type == "content_block_start" and e.content_block.type == "tool_use":
            assert e.content_block.name == "execute"
            tool_json[e.index] = ""
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta":
            tool_json[e.index] += e.delta.partial_json
    assert [json.loads(tool_json[i]) for i in sorted(tool_json)] == ARGS
    assert events[-2].delta.stop_reason == "tool_use" and events[-2].usage.output_tokens == 8


def test_anthropic_stream_helper_accumulates(llm: FakeLLM) -> None:
    llm.script(Reply(LONG_TEXT, blocks=BLOCKS[:1]))
    with ant(llm).messages.stream(model="claude-x", max_tokens=100, messages=MSGS, tools=ANTHROPIC_TOOLS) as s:
        final = s.get_final_message()
    assert final.content[0].text == LONG_TEXT and final.content[1].input == ARGS[0]
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 5


def test_auth_401_does_not_consume_reply(llm: FakeLLM) -> None:
    llm.script(Reply("for openai"), Reply("for anthropic"))
    with pytest.raises(openai.AuthenticationError) as oe:
        oai(llm, key="wrong").chat.completions.create(model="gpt-x", messages=MSGS)
    assert oe.value.body["code"] == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError) as ae:
        ant(llm, key="wrong").messages.create(model="claude-x", max_tokens=10, messages=MSGS)
    assert ae.value.body["error"]["type"] == "authentication_error"
    assert oai(llm).chat.completions.create(model="gpt-x", messages=MSGS).choices[0].message.content == "for openai"
    assert ant(llm).messages.create(model="c", max_tokens=10, messages=MSGS).content[0].text == "for anthropic"
    assert len(llm.requests) == 4


def test_error_statuses_consume_replies(llm: FakeLLM) -> None:
    llm.script(Reply(status=500), Reply(status=500), Reply(status=429), Reply(status=429, text="x"))
    with pytest.raises(openai.InternalServerError):
        oai(llm).chat.completions.create(model="gpt-x", messages=MSGS)
    with pytest.raises(anthropic.InternalServerError) as ae:
        ant(llm).messages.create(model="claude-x", max_tokens=10, messages=MSGS, stream=True)
    assert ae.value.body["error"]["type"] == "api_error"
    with pytest.raises(openai.RateLimitError):
        oai(llm).chat.completions.create(model="gpt-x", messages=MSGS, stream=True)
    with pytest.raises(anthropic.RateLimitError):
        ant(llm).messages.create(model="claude-x", max_tokens=10, messages=MSGS)


def test_empty_queue_fails_loudly(llm: FakeLLM) -> None:
    with pytest.raises(openai.InternalServerError, match="no scripted reply left"):
        oai(llm).chat.completions.create(model="gpt-x", messages=MSGS)
    with pytest.raises(anthropic.InternalServerError, match="no scripted reply left"):
        ant(llm).messages.create(model="claude-x", max_tokens=10, messages=MSGS)


def test_per_model_queues_and_requests_for(llm: FakeLLM) -> None:
    llm.script(Reply("A1"), Reply("A2"), model="model-a")
    llm.script(Reply("D1"), Reply("D2"))
    client = oai(llm)

    def ask(model: str) -> str:
        return client.chat.completions.create(model=model, messages=MSGS).choices[0].message.content

    assert [ask("model-b"), ask("model-a"), ask("model-a"), ask("model-a")] == ["D1", "A1", "A2", "D2"]
    assert len(llm.requests_for("model-a")) == 3 and len(llm.requests_for("model-b")) == 1


def test_responder_overrides_queues(llm: FakeLLM) -> None:
    llm.script(Reply("queued"))
    llm.responder = lambda body: Reply(f"echo {body['messages'][-1]['content']}")
    msg = ant(llm).messages.create(model="claude-x", max_tokens=10, messages=MSGS)
    assert msg.content[0].text == "echo count lines"


def test_chunk_delay_spaces_chunks(llm: FakeLLM) -> None:
    delay = 0.03
    llm.script(Reply(LONG_TEXT, chunk_delay_s=delay), Reply(LONG_TEXT, chunk_delay_s=delay))
    stamps = [time.monotonic() for _ in oai(llm).chat.completions.create(model="m", messages=MSGS, stream=True)]
    assert len(stamps) >= 5 and stamps[-1] - stamps[0] >= 0.8 * delay * (len(stamps) - 1)
    stamps = [time.monotonic() for _ in ant(llm).messages.create(model="m", max_tokens=9, messages=MSGS, stream=True)]
    assert len(stamps) >= 5 and stamps[-1] - stamps[0] >= 0.8 * delay * (len(stamps) - 1)


def test_delay_before_headers_triggers_client_timeout(llm: FakeLLM) -> None:
    llm.script(Reply("late", delay_s=0.5), Reply("on time"))
    client = oai(llm, timeout=0.1)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MSGS)
    assert client.chat.completions.create(model="m", messages=MSGS).choices[0].message.content == "on time"


def test_client_disconnect_mid_stream_is_quiet(llm: FakeLLM, capfd: pytest.CaptureFixture[str]) -> None:
    llm.script(Reply("x" * 200, chunk_delay_s=0.01), Reply("after"))
    stream = oai(llm).chat.completions.create(model="m", messages=MSGS, stream=True)
    next(iter(stream))
    stream.close()
    # The server's handler has met the broken pipe and finished.
    wait_until(lambda: not llm._conns, what="the server to notice the disconnect")
    assert oai(llm).chat.completions.create(model="m", messages=MSGS).choices[0].message.content == "after"
    assert "Traceback" not in capfd.readouterr().err


def test_requests_recorded_and_unknown_route(llm: FakeLLM) -> None:
    llm.script(Reply("ok"), Reply("ok"))
    oai(llm).chat.completions.create(model="gpt-x", messages=MSGS)
    ant(llm).messages.create(model="claude-x", max_tokens=10, messages=MSGS)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{llm.anthropic_base_url}/v1/nope", timeout=2)
    assert err.value.code == 404 and "error" in json.loads(err.value.read())
    first, second, third = llm.requests
    assert first["path"] == "/v1/chat/completions" and first["headers"]["authorization"] == "Bearer test-key"
    assert first["body"] == {"model": "gpt-x", "messages": MSGS}
    assert second["path"] == "/v1/messages" and second["headers"]["authorization"] == "Bearer test-key"
    assert second["body"]["max_tokens"] == 10 and "anthropic-version" in second["headers"]
    assert third["path"] == "/v1/nope" and third["body"] == {}


def test_anthropic_accepts_x_api_key_header(llm: FakeLLM) -> None:
    """Older anthropic SDKs (and curl users) authenticate with x-api-key instead of a Bearer token."""
    llm.script(Reply("raw"))

    def post(key: str) -> dict:
        req = urllib.request.Request(f"{llm.anthropic_base_url}/v1/messages", method="POST",
                                     data=json.dumps({"model": "c", "max_tokens": 5, "messages": MSGS}).encode(),
                                     headers={"x-api-key": key, "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=2) as resp:
            return json.loads(resp.read())

    with pytest.raises(urllib.error.HTTPError) as err:
        post("wrong")
    assert err.value.code == 401
    assert post("test-key")["content"] == [{"type": "text", "text": "raw"}]


def test_stop_cuts_pooled_connections() -> None:
    with FakeLLM() as llm:
        llm.script(Reply("one"), Reply("two"))
        client = oai(llm)
        client.chat.completions.create(model="m", messages=MSGS)  # leaves a keep-alive connection in the pool
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MSGS)
