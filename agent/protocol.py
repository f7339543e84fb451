"""How a model asks for code to run, in both supported protocols.

Tool calling: the model calls the `execute` tool with `language`, `code` and
an optional `name`. Markdown: the model writes fenced blocks whose info string
is the language and an optional file name (```python count_lines.py). Both
become `CodeRequest`s, so the engine does not care which one a model used.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

TOOL_NAME = "execute"

TOOL_DESCRIPTION = (
    "Run a block of code in the task's workspace (the current directory) and "
    "get back its exit status, stdout and stderr. Files the code writes stay "
    "in the workspace as the task's results."
)

TOOL_PARAMETERS = {
    "type": "object",
    "properties": {
        "language": {
            "type": "string",
            "description": "python, bash or sh",
        },
        "code": {"type": "string", "description": "The complete code to run."},
        "name": {
            "type": "string",
            "description": "Optional file name to save the code as, e.g. count_lines.py",
        },
    },
    "required": ["language", "code"],
}

#: Fence tags that mark text to show, not code to run.
_DISPLAY_TAGS = frozenset(
    "text txt plain plaintext output console log json jsonl yaml yml csv tsv "
    "markdown md diff xml toml ini".split()
)

_FENCE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,})(?P<info>[^`]*)$")


@dataclass
class CodeRequest:
    """One block of code the model wants run.

    `call_id` ties a tool call to its result; `error` is set when the request
    itself was malformed (e.g. tool arguments that are not valid JSON), in
    which case nothing is run and the error is reported back.
    """

    language: str
    code: str
    name: str | None = None
    call_id: str = ""
    error: str | None = None

    def to_tool_input(self) -> dict:
        data = {"language": self.language, "code": self.code}
        if self.name:
            data["name"] = self.name
        return data


def request_from_tool_call(call_id: str, tool_name: str, arguments: str | dict) -> CodeRequest:
    """Build a request from a tool call's name and JSON arguments, recording
    (not raising) anything malformed so the model can be told and retry."""
    if tool_name != TOOL_NAME:
        return CodeRequest("", "", call_id=call_id, error=f"unknown tool {tool_name!r}; use {TOOL_NAME!r}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            return CodeRequest("", "", call_id=call_id, error=f"tool arguments are not valid JSON: {exc}")
    if not isinstance(arguments, dict):
        return CodeRequest("", "", call_id=call_id, error="tool arguments must be a JSON object")
    language, code, name = arguments.get("language"), arguments.get("code"), arguments.get("name")
    if not isinstance(language, str) or not isinstance(code, str):
        return CodeRequest("", "", call_id=call_id, error="tool arguments need string 'language' and 'code'")
    name = name.strip() if isinstance(name, str) and name.strip() else None
    return CodeRequest(language.strip().lower(), code, name, call_id=call_id)


def extract_blocks(text: str) -> list[CodeRequest]:
    """The runnable fenced blocks of a markdown reply, in order.

    A block without a language or tagged as display text (json, output...)
    is not a request to run. An unclosed fence at the end of a reply counts
    as closed there, since the model may have been cut off mid-block.
    """
    blocks: list[CodeRequest] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        body: list[str] = []
        i += 1
        while i < len(lines) and not _closes(lines[i], fence):
            body.append(lines[i])
            i += 1
        i += 1
        words = info.split()
        language = words[0].lower() if words else ""
        if language and language not in _DISPLAY_TAGS:
            name = words[1] if len(words) > 1 else None
            blocks.append(CodeRequest(language, "\n".join(body) + "\n", name))
    return blocks


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and set(stripped) == {"`"}
