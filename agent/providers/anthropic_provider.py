"""Anthropic messages through the official `anthropic` SDK.

Replies are streamed as raw server-sent events: text deltas build the prose,
`input_json_delta` fragments build each tool call's arguments.
"""

from __future__ import annotations

import threading

import anthropic

from ..protocol import TOOL_DESCRIPTION, TOOL_NAME, TOOL_PARAMETERS, request_from_tool_call
from .base import Aborted, Provider, Reply, Turn, Usage

_TOOLS = [{"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": TOOL_PARAMETERS}]


class AnthropicProvider(Provider):
    api_error = anthropic.APIError
    status_error = anthropic.APIStatusError
    connection_error = anthropic.APIConnectionError

    def _make_client(self, api_key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            api_key=api_key, base_url=self.settings.base_url, max_retries=0, timeout=self.timeout_s
        )

    def _open_stream(self, client, system: str, turns: list[Turn]):
        s = self.settings
        params: dict = {
            "model": s.model,
            "max_tokens": s.max_tokens,
            "system": system,
            "messages": to_anthropic_messages(turns),
            "stream": True,
        }
        if s.temperature is not None:
            params["temperature"] = s.temperature
        if self.uses_tools:
            params["tools"] = _TOOLS
        return client.messages.create(**params)

    def _read_stream(self, stream, abort: threading.Event) -> Reply:
        text: list[str] = []
        tools: dict[int, dict] = {}
        usage = Usage()
        for event in stream:
            if abort.is_set():
                raise Aborted()
            kind = event.type
            if kind == "message_start":
                usage.input_tokens = event.message.usage.input_tokens or 0
            elif kind == "content_block_start" and event.content_block.type == "tool_use":
                block = event.content_block
                tools[event.index] = {"id": block.id, "name": block.name, "json": []}
            elif kind == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta":
                    text.append(delta.text)
                elif delta.type == "input_json_delta" and event.index in tools:
                    tools[event.index]["json"].append(delta.partial_json)
            elif kind == "message_delta" and event.usage is not None:
                usage.output_tokens = event.usage.output_tokens or 0
        requests = [
            request_from_tool_call(slot["id"], slot["name"], "".join(slot["json"]))
            for _, slot in sorted(tools.items())
        ]
        return Reply("".join(text), requests, usage)

def to_anthropic_messages(turns: list[Turn]) -> list[dict]:
    messages: list[dict] = []
    for turn in turns:
        if turn.role == "user":
            messages.append({"role": "user", "content": turn.text})
        elif turn.role == "assistant":
            content: list[dict] = [{"type": "text", "text": turn.text}] if turn.text else []
            content += [
                {"type": "tool_use", "id": call.call_id, "name": TOOL_NAME, "input": call.to_tool_input()}
                for call in turn.tool_calls
            ]
            messages.append({"role": "assistant", "content": content})
        else:
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": call_id, "content": text, "is_error": failed}
                        for call_id, text, failed in turn.results
                    ],
                }
            )
    return messages
