"""OpenAI chat completions through the official `openai` SDK.

Covers every OpenAI-compatible endpoint (OpenAI, DeepSeek, OpenRouter, Ollama,
vLLM) by `base_url`. Replies are always streamed, so a cancel stops reading
between chunks, and usage comes in the stream's last chunk.
"""

from __future__ import annotations

import json
import threading

import openai

from ..protocol import TOOL_DESCRIPTION, TOOL_NAME, TOOL_PARAMETERS, request_from_tool_call
from .base import Aborted, Provider, Reply, Turn, Usage

_TOOLS = [
    {
        "type": "function",
        "function": {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": TOOL_PARAMETERS},
    }
]


class OpenAIProvider(Provider):
    api_error = openai.APIError
    status_error = openai.APIStatusError
    connection_error = openai.APIConnectionError

    def _make_client(self, api_key: str) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=api_key, base_url=self.settings.base_url, max_retries=0, timeout=self.timeout_s
        )

    def _open_stream(self, client, system: str, turns: list[Turn]):
        s = self.settings
        params: dict = {
            "model": s.model,
            "messages": to_openai_messages(system, turns),
            "stream": True,
            "stream_options": {"include_usage": True},
            s.max_tokens_field: s.max_tokens,
        }
        if s.temperature is not None:
            params["temperature"] = s.temperature
        if self.uses_tools:
            params["tools"] = _TOOLS
        return client.chat.completions.create(**params)

    def _read_stream(self, stream, abort: threading.Event) -> Reply:
        text: list[str] = []
        calls: dict[int, dict] = {}
        usage = Usage()
        for chunk in stream:
            if abort.is_set():
                raise Aborted()
            if chunk.usage is not None:
                usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
            for choice in chunk.choices:
                delta = choice.delta
                if delta is None:
                    continue
                if delta.content:
                    text.append(delta.content)
                for call in delta.tool_calls or []:
                    index = call.index if call.index is not None else len(calls)
                    slot = calls.setdefault(index, {"id": "", "name": "", "arguments": []})
                    if call.id:
                        slot["id"] = call.id
                    if call.function is not None:
                        if call.function.name:
                            slot["name"] = call.function.name
                        if call.function.arguments:
                            slot["arguments"].append(call.function.arguments)
        requests = [
            request_from_tool_call(slot["id"] or f"call_{index}", slot["name"], "".join(slot["arguments"]))
            for index, slot in sorted(calls.items())
        ]
        return Reply("".join(text), requests, usage)

def to_openai_messages(system: str, turns: list[Turn]) -> list[dict]:
    messages: list[dict] = [{"role": "system", "content": system}]
    for turn in turns:
        if turn.role == "user":
            messages.append({"role": "user", "content": turn.text})
        elif turn.role == "assistant":
            message: dict = {"role": "assistant", "content": turn.text or None}
            if turn.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": TOOL_NAME, "arguments": json.dumps(call.to_tool_input())},
                    }
                    for call in turn.tool_calls
                ]
            else:
                message["content"] = turn.text
            messages.append(message)
        else:
            for call_id, text, _failed in turn.results:
                messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
    return messages
