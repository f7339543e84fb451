"""`aipy-agent tail TASK_ID`: follow a task live in the terminal.

It reads the task's event stream through the SDK, so it works against any
server it can reach, local or remote, and picks up again after a dropped
connection. By default each event becomes a line or a few for people: the
model's messages, the code blocks it runs and their output (at most
`MAX_LINES` lines each), errors, and the final status and answer. `--json`
prints the events exactly as the server sends them, one JSON object a line.

Exit status: 0 when the task completed, 1 when it ended as error or
cancelled, 2 for a usage error, an unknown task or an unreachable server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime

from sdk import AgentClient, APIError, ConnectionFailed, Event, NotFound, Unauthorized

DEFAULT_URL = "http://127.0.0.1:8848"
#: Longest output, message or answer shown per event; the rest is counted.
MAX_LINES = 20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="aipy-agent tail",
        description="Follow a task live: its model messages, code runs, results and final answer.",
    )
    parser.add_argument("task_id", help="the task to follow")
    parser.add_argument("--url", default=os.environ.get("AIPYTHON_URL") or DEFAULT_URL,
                        help=f"the server (default: $AIPYTHON_URL, else {DEFAULT_URL})")
    parser.add_argument("--token", default=os.environ.get("AIPYTHON_API_TOKEN") or None,
                        help="API token (default: $AIPYTHON_API_TOKEN)")
    parser.add_argument("--after", type=int, default=0, metavar="SEQ",
                        help="start after this event seq (default: 0, from the beginning)")
    parser.add_argument("--json", action="store_true", help="print the raw event lines (JSON, one per line)")
    args = parser.parse_args(argv)
    if args.after < 0:
        parser.error("--after must be 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage or the help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with AgentClient(args.url, token=args.token) as client:
            status = follow(client, args.task_id, args.after, args.json)
            if status is None:  # the stream ended without task_end: ask the task itself
                status = client.get_task(args.task_id).status
    except NotFound as exc:
        return fail(f"task {args.task_id} not found" if exc.detail.startswith("Task ") else exc.detail)
    except Unauthorized:
        return fail(f"{args.url} refused the API token; pass --token or set AIPYTHON_API_TOKEN")
    except ConnectionFailed as exc:
        return fail(str(exc))
    except APIError as exc:
        return fail(f"{args.url} answered {exc.status_code}: {exc.detail}")
    except KeyboardInterrupt:
        return 130
    return 0 if status == "completed" else 1


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def follow(client: AgentClient, task_id: str, after: int, raw: bool) -> str | None:
    """Print the task's events until task_end; the task's final status."""
    status = None
    for event in client.stream_events(task_id, after=after):
        lines = [json.dumps(event.raw, ensure_ascii=False)] if raw else render(event)
        for line in lines:
            emit(line)
        if event.type == "task_end":
            status = str(event.content.get("status") or "")
    return status


def emit(line: str) -> None:
    """Print a line even where the terminal cannot show every character."""
    try:
        print(line, flush=True)
    except UnicodeEncodeError:
        encoding = getattr(sys.stdout, "encoding", None) or "ascii"
        print(line.encode(encoding, "replace").decode(encoding), flush=True)


# -- rendering for people -----------------------------------------------------

def render(event: Event) -> list[str]:
    """The lines shown for one event: a headline with its time, then any body."""
    content = event.content
    draw = RENDERERS.get(event.type, render_other)
    headline, body = draw(content, event)
    return [f"{clock(event.timestamp)} {headline}", *(f"    {line}" for line in body)]


def render_task_start(content: dict, event: Event) -> tuple[str, list[str]]:
    return "▶ task started", trim(str(content.get("instruction") or ""))


def render_llm_response(content: dict, event: Event) -> tuple[str, list[str]]:
    parts = [f"round {content['round']}" if content.get("round") is not None else None, content.get("llm")]
    usage = content.get("usage") or {}
    if usage.get("input_tokens") is not None or usage.get("output_tokens") is not None:
        parts.append(f"{usage.get('input_tokens', 0)}→{usage.get('output_tokens', 0)} tokens")
    label = " · ".join(str(p) for p in parts if p)
    return f"💬 {label}" if label else "💬 model", trim(str(content.get("message") or ""))


def render_exec_start(content: dict, event: Event) -> tuple[str, list[str]]:
    return f"⚙ run {content.get('block_name') or 'block'} ({content.get('language') or '?'})", []


def render_exec_result(content: dict, event: Event) -> tuple[str, list[str]]:
    result = content.get("result") if isinstance(content.get("result"), dict) else {}
    status = str(result.get("status") or "done")
    mark = "✓" if status == "success" else "✗"
    facts = [status]
    if result.get("returncode") not in (None, 0):
        facts.append(f"exit {result['returncode']}")
    if isinstance(result.get("duration_ms"), (int, float)):
        facts.append(duration(result["duration_ms"]))
    output = result.get("output")
    if output is None:
        output = "".join(str(result.get(k) or "") for k in ("stdout", "stderr"))
    return f"{mark} {content.get('block_name') or 'block'}: {', '.join(facts)}", trim(str(output))


def render_error(content: dict, event: Event) -> tuple[str, list[str]]:
    return f"✗ error: {content.get('message') or 'unknown error'}", []


def render_task_end(content: dict, event: Event) -> tuple[str, list[str]]:
    status = str(content.get("status") or "finished")
    facts = [f"{content['rounds']} rounds" if content.get("rounds") is not None else None,
             duration(content["duration_ms"]) if isinstance(content.get("duration_ms"), (int, float)) else None]
    facts_text = " · ".join(f for f in facts if f)
    headline = f"■ {status}" + (f" ({facts_text})" if facts_text else "")
    body = [f"error: {content['error']}"] if content.get("error") else []
    if content.get("answer"):
        body += ["answer:", *trim(str(content["answer"]))]
    return headline, body


def render_other(content: dict, event: Event) -> tuple[str, list[str]]:
    fields = ", ".join(f"{key}={value}" for key, value in content.items() if isinstance(value, (str, int, float, bool)))
    return f"· {event.type or 'event'}" + (f": {fields}" if fields else ""), []


RENDERERS = {
    "task_start": render_task_start,
    "llm_response": render_llm_response,
    "exec_start": render_exec_start,
    "exec_result": render_exec_result,
    "error": render_error,
    "task_end": render_task_end,
}


def trim(text: str, limit: int = MAX_LINES) -> list[str]:
    """The text's lines, at most `limit`, then a marker counting the rest."""
    lines = text.rstrip("\n").splitlines() if text.strip() else []
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"… {len(lines) - limit} more lines"]


def duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def clock(timestamp: str | None) -> str:
    """HH:MM:SS of an event's UTC timestamp, in local time."""
    if not timestamp:
        return "--:--:--"
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return timestamp[:8]


if __name__ == "__main__":
    sys.exit(main())
