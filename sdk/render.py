"""Task events as text for people: one look for every tool that shows them.

`render(kind, content, timestamp)` works on plain data, the event's type and
its content dict, so the engine's own events (`python -m agent`) and the
SDK's `Event`s (`aipy-agent tail`) are drawn alike:

    12:00:05 ▶ task started
        count the lines of every .txt file
    12:00:07 💬 round 1 · deepseek · 812→95 tokens
    12:00:07 ⚙ run count.py (python)
    12:00:08 ✓ count.py: success, 41 ms
    12:00:09 ✗ error: …
    12:00:09 ■ completed (2 rounds · 3.9 s)

Each event is a headline after its local time, then a body indented by four
spaces, cut after `max_lines` lines (default `MAX_LINES`; None: no limit).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

#: Longest output, message or answer shown per event by default; the rest is counted.
MAX_LINES = 20

Drawing = tuple[str, list[str]]


def render(kind: str, content: Mapping[str, Any], timestamp: str | None = None, *,
           max_lines: int | None = MAX_LINES) -> list[str]:
    """The lines shown for one event: a headline with its time (`--:--:--`
    when `timestamp`, a UTC ISO 8601 string, is missing), then any body."""
    draw = _DRAWERS.get(kind)
    headline, body = draw(content) if draw else _other(kind, content)
    body = trim(body, max_lines)
    return [f"{clock(timestamp)} {headline}", *(f"    {line}" for line in body)]


def print_lines(lines: Iterable[str]) -> None:
    """Print lines, flushed, even where the terminal cannot show every
    character (a non-UTF-8 console): those become replacement marks."""
    for line in lines:
        try:
            print(line, flush=True)
        except UnicodeEncodeError:
            encoding = getattr(sys.stdout, "encoding", None) or "ascii"
            print(line.encode(encoding, "replace").decode(encoding), flush=True)


def _text(value: Any) -> list[str]:
    text = str(value or "")
    return text.rstrip("\n").splitlines() if text.strip() else []


def _task_start(content: Mapping[str, Any]) -> Drawing:
    return "▶ task started", _text(content.get("instruction"))


def _llm_response(content: Mapping[str, Any]) -> Drawing:
    parts = [f"round {content['round']}" if content.get("round") is not None else None, content.get("llm")]
    usage = content.get("usage") if isinstance(content.get("usage"), Mapping) else {}
    if usage.get("input_tokens") is not None or usage.get("output_tokens") is not None:
        parts.append(f"{usage.get('input_tokens', 0)}→{usage.get('output_tokens', 0)} tokens")
    label = " · ".join(str(p) for p in parts if p)
    return f"💬 {label or 'model'}", _text(content.get("message"))


def _exec_start(content: Mapping[str, Any]) -> Drawing:
    return f"⚙ run {content.get('block_name') or 'block'} ({content.get('language') or '?'})", []


def _exec_result(content: Mapping[str, Any]) -> Drawing:
    result = content.get("result") if isinstance(content.get("result"), Mapping) else {}
    status = str(result.get("status") or "done")
    facts = [status]
    if result.get("returncode") not in (None, 0):
        facts.append(f"exit {result['returncode']}")
    if isinstance(result.get("duration_ms"), (int, float)):
        facts.append(duration(result["duration_ms"]))
    output = result.get("output")
    if output is None:  # an older server sends the two streams only
        output = "".join(str(result.get(k) or "") for k in ("stdout", "stderr"))
    mark = "✓" if status == "success" else "✗"
    return f"{mark} {content.get('block_name') or 'block'}: {', '.join(facts)}", _text(output)


def _error(content: Mapping[str, Any]) -> Drawing:
    return f"✗ error: {content.get('message') or 'unknown error'}", []


def _task_end(content: Mapping[str, Any]) -> Drawing:
    facts = [f"{content['rounds']} rounds" if content.get("rounds") is not None else None,
             duration(content["duration_ms"]) if isinstance(content.get("duration_ms"), (int, float)) else None]
    facts_text = " · ".join(f for f in facts if f)
    headline = f"■ {content.get('status') or 'finished'}" + (f" ({facts_text})" if facts_text else "")
    body = [f"error: {content['error']}"] if content.get("error") else []
    if content.get("answer"):
        body += ["answer:", *_text(content["answer"])]
    return headline, body


def _other(kind: str, content: Mapping[str, Any]) -> Drawing:
    """An event type this version does not know: its simple fields on one line."""
    fields = ", ".join(f"{key}={value}" for key, value in content.items() if isinstance(value, (str, int, float, bool)))
    return f"· {kind or 'event'}" + (f": {fields}" if fields else ""), []


_DRAWERS: dict[str, Callable[[Mapping[str, Any]], Drawing]] = {
    "task_start": _task_start,
    "llm_response": _llm_response,
    "exec_start": _exec_start,
    "exec_result": _exec_result,
    "error": _error,
    "task_end": _task_end,
}


def trim(lines: list[str], limit: int | None = MAX_LINES) -> list[str]:
    """At most `limit` lines (None: all), then a marker counting the rest."""
    if limit is None or len(lines) <= limit:
        return lines
    return [*lines[:limit], f"… {len(lines) - limit} more lines"]


def duration(ms: float) -> str:
    """`41 ms`, or `3.9 s` from one second on."""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def clock(timestamp: str | None) -> str:
    """HH:MM:SS of a UTC ISO 8601 timestamp, in local time."""
    if not timestamp:
        return "--:--:--"
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return timestamp[:8]
