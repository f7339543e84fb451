"""`aipy-agent tail TASK_ID`: follow a task live in the terminal.

It reads the task's event stream through the SDK, so it works against any
server it can reach, local or remote, and picks up again after a dropped
connection. By default each event becomes a line or a few for people, drawn
by `sdk.render`: the model's messages, the code blocks it runs and their
output (at most `render.MAX_LINES` lines each), errors, and the final status
and answer. `--json` prints the events exactly as the server sends them, one
JSON object a line.

Exit status: 0 when the task completed, 1 when it ended as error or
cancelled, 2 for a usage error, an unknown task or an unreachable server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ._common import DEFAULT_URL
from .client import AgentClient
from .errors import APIError, ConnectionFailed, NotFound, Unauthorized
from .render import print_lines, render


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
    """Follow the task `argv` names (default: the command line); the exit status."""
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
        if raw:
            print_lines([json.dumps(event.raw, ensure_ascii=False)])
        else:
            print_lines(render(event.type, event.content, event.timestamp))
        if event.type == "task_end":
            status = str(event.content.get("status") or "")
    return status


if __name__ == "__main__":
    sys.exit(main())
