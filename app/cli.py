"""`python -m app --agent` / `aipy-agent --agent`: the server from the spec;
`aipy-agent tail TASK_ID` follows a task live (the SDK's `sdk/tail.py`).

With no REDIS_URL this one process is the whole system: HTTP, the embedded
broker, the worker threads and the cleanup schedule. With REDIS_URL it sends
tasks to Redis and, unless --no-worker, also works on them itself.

It starts honestly (launch.py): a bad configuration or --role file, an
unusable data folder, a busy port or no sandbox tier is one `error:` line
and a non-zero exit before the banner; the banner then says where tasks run.
"""

from __future__ import annotations

import argparse
import os
import sys

from actors.entry import CONFIG_ERROR, StartupFailure, open_process, report

from .launch import fail, listen, serve, tasks_elsewhere
from .version import VERSION

SUBCOMMANDS = """subcommands:
  tail TASK_ID          follow a task live in the terminal (aipy-agent tail --help)

exit status: 0 after a stop (SIGTERM, Ctrl-C); 1 when the host refuses the
start (the port is taken, the data folder cannot be opened or written); 2 for
the configuration or the command line (a bad setting or AIPYTHON_* value, a
missing --role file, no sandbox that can run code, no --agent)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aipy-agent", description="AIPython Agent Mode: the HTTP API server.",
                                     epilog=SUBCOMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"aipy-agent {VERSION}")
    parser.add_argument("--agent", action="store_true", help="enable Agent mode (required)")
    parser.add_argument("--host", default="127.0.0.1", help="server host address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="server port (default: $PORT, else 8848)")
    parser.add_argument("--config-dir", help="configuration directory (default: $AIPYTHON_CONFIG_DIR, else ./config)")
    parser.add_argument("--role", help="AI assistant role: the text, or a file holding it (a value ending in .txt "
                                       "or .md, or a path with a / and no spaces, must name an existing file; "
                                       "default: role.txt)")
    parser.add_argument("--debug", action="store_true",
                        help="debug lines from this service's own loggers (also AIPYTHON_DEBUG=1)")
    parser.add_argument("--debug-all", action="store_true",
                        help="debug lines from every library too (also AIPYTHON_DEBUG_LIBRARIES=1)")
    parser.add_argument("--workers", type=int, help="tasks run at once (default: settings.json, 8)")
    parser.add_argument("--data-dir", help="where tasks are stored (default: $AIPYTHON_DATA_DIR, else ./data)")
    parser.add_argument("--no-worker", action="store_true", help="with REDIS_URL: only serve HTTP, run no tasks here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "tail":
        from sdk.tail import main as tail  # a client of the API, so it lives in the SDK

        return tail(argv[1:])
    args = parse_args(argv)
    if not args.agent:
        print("error: this command runs the Agent mode server; start it with --agent", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in {"workers": args.workers, "data_dir": args.data_dir}.items() if v is not None}
    if args.debug or args.debug_all:
        overrides["debug"] = True
    if args.debug_all:
        overrides["debug_libraries"] = True
    try:
        system = open_process(args.config_dir, role=args.role, overrides=overrides)
    except StartupFailure as failure:
        return report(failure)
    if args.no_worker and system.embedded:
        return fail(system, StartupFailure("--no-worker needs REDIS_URL: without a Redis queue no other process "
                                           "can run this server's tasks; set REDIS_URL or drop --no-worker",
                                           CONFIG_ERROR))
    port = args.port or int(os.environ.get("PORT") or 8848)
    run_tasks = not args.no_worker
    try:
        server = listen(system, args.host, port, run_tasks=run_tasks)
    except StartupFailure as failure:
        return fail(system, failure)

    print(f"🤖 AIPython Agent Mode ({VERSION})", flush=True)
    print(f"🚀 Starting HTTP API server on {args.host}:{port}", flush=True)
    system.start_in_process(run_tasks=run_tasks)
    print("✅ Agent manager initialized", flush=True)
    if not run_tasks:
        print(f"📭 This process runs no tasks (--no-worker): {tasks_elsewhere(system)}", flush=True)
    print(f"🔗 API Documentation: http://{args.host}:{port}/docs", flush=True)
    print(f"📊 Health Check: http://{args.host}:{port}/health", flush=True)
    print(f"🖥️ Dashboard: http://{args.host}:{port}/ui", flush=True)
    return serve(server, system)


if __name__ == "__main__":
    sys.exit(main())
