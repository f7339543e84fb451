"""Run one task from the command line and print its events as they happen.

    python -m agent "count the lines of every .txt file here" [--llm NAME]
        [--config-dir DIR] [--workspace DIR] [--json]

A developer's tool for trying prompts and providers without the server. The
configuration comes from the same files and environment variables as the
service's. Without --workspace the task runs in a fresh temporary folder,
which is kept and printed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from config import ConfigError, load_config
from sdk.render import print_lines, render

from . import Engine, make_provider


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description="Run one agent task and print its events.")
    parser.add_argument("instruction", help="what the agent should do")
    parser.add_argument("--llm", help="provider name from llm.json (default: its default)")
    parser.add_argument("--config-dir", help="configuration directory (default: ./config)")
    parser.add_argument("--role", help="role text, or a file holding it (default: role.txt)")
    parser.add_argument("--workspace", help="folder the code runs in (default: a new temp folder)")
    parser.add_argument("--json", action="store_true", help="print raw JSON events, one per line")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config_dir, role=args.role)
        provider_settings = config.llm.provider(args.llm)
    except (ConfigError, KeyError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    settings = config.settings.engine_settings()
    engine = Engine(make_provider(provider_settings, settings.llm_timeout_s), settings, role=config.role)
    workspace = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="aipy-task-"))
    workspace.mkdir(parents=True, exist_ok=True)

    def show(kind: str, content: dict) -> None:
        if args.json:
            print_lines([json.dumps({"type": kind, "content": content}, ensure_ascii=False)])
        else:  # drawn as `aipy-agent tail` draws it, stamped now: the engine's events carry no time
            now = datetime.now(timezone.utc).isoformat()
            print_lines(render(kind, content, now, max_lines=None))

    try:
        outcome = engine.run(args.instruction, workspace, show)
    except KeyboardInterrupt:
        return 130
    if not args.json:
        print(f"workspace: {workspace}")
    return 0 if outcome.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
