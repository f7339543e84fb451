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
from pathlib import Path

from config import ConfigError, load_config

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
            print(json.dumps({"type": kind, "content": content}, ensure_ascii=False), flush=True)
        else:
            print(describe(kind, content), flush=True)

    try:
        outcome = engine.run(args.instruction, workspace, show)
    except KeyboardInterrupt:
        return 130
    if not args.json:
        print(f"workspace: {workspace}")
    return 0 if outcome.status == "completed" else 1


def describe(kind: str, content: dict) -> str:
    """One event as a person reads it."""
    if kind == "task_start":
        return f"▶ task: {content['instruction']}"
    if kind == "llm_response":
        usage = content["usage"]
        head = f"🤖 {content['llm']} (round {content['round']}, {usage['input_tokens']}→{usage['output_tokens']} tokens)"
        return f"{head}\n{content['message']}".rstrip()
    if kind == "exec_start":
        return f"⚙ run {content['block_name']} ({content['language']})"
    if kind == "exec_result":
        result = content["result"]
        head = f"  {result['status']} in {result['duration_ms']} ms"
        return f"{head}\n{result['output']}".rstrip()
    if kind == "error":
        return f"✖ {content['message']}"
    if kind == "task_end":
        line = f"■ {content['status']} after {content['rounds']} round(s), {content['duration_ms']} ms"
        return line + (f": {content['error']}" if content.get("error") else "")
    return f"{kind}: {json.dumps(content, ensure_ascii=False)}"


if __name__ == "__main__":
    sys.exit(main())
