"""`python -m app --agent` / `aipy-agent --agent`: the server from the spec;
`aipy-agent tail TASK_ID` follows a task live (the SDK's `sdk/tail.py`).

With no REDIS_URL this one process is the whole system: HTTP, the embedded
broker, the worker threads and the cleanup schedule. With REDIS_URL it sends
tasks to Redis and, unless --no-worker, also works on them itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from actors import TaskSystem, setup_logging
from agent import SandboxUnavailable
from config import ConfigError, load_config

from .factory import create_app
from .http_server import build_server
from .peers import sandbox_uids_to_refuse
from .version import VERSION

log = logging.getLogger("aipy.server")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aipy-agent", description="AIPython Agent Mode: the HTTP API server.")
    parser.add_argument("--agent", action="store_true", help="enable Agent mode (required)")
    parser.add_argument("--host", default="127.0.0.1", help="server host address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="server port (default: $PORT, else 8848)")
    parser.add_argument("--config-dir", help="configuration directory (default: $AIPYTHON_CONFIG_DIR, else ./config)")
    parser.add_argument("--role", help="AI assistant role: the text, or a file holding it (default: role.txt)")
    parser.add_argument("--debug", action="store_true", help="enable debug logging (also AIPYTHON_DEBUG=1)")
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
    if args.debug:
        overrides["debug"] = True
    try:
        config = load_config(args.config_dir, role=args.role, overrides=overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    port = args.port or int(os.environ.get("PORT") or 8848)
    setup_logging(config.settings.debug)

    print(f"🤖 AIPython Agent Mode ({VERSION})", flush=True)
    print(f"🚀 Starting HTTP API server on {args.host}:{port}", flush=True)
    system = TaskSystem(config)
    try:
        system.start_in_process(run_tasks=not args.no_worker)
    except SandboxUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        system.stop()
        return 2
    print("✅ Agent manager initialized", flush=True)
    print(f"🔗 API Documentation: http://{args.host}:{port}/docs", flush=True)
    print(f"📊 Health Check: http://{args.host}:{port}/health", flush=True)
    return serve(create_app(system), system, args.host, port)


def serve(app, system: TaskSystem, host: str, port: int) -> int:
    """Serve until SIGTERM or Ctrl-C, then stop the workers: running tasks
    end as errors and the process exits well within 10 seconds. As root,
    connections from sandboxed task code are refused (see peers.py)."""
    settings = system.settings
    try:
        server = build_server(app, settings, host=host, port=port,
                              refused_uids=sandbox_uids_to_refuse(settings.engine))
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror}; choose another port", file=sys.stderr)
        system.stop()
        return 1

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.run()  # returns on SIGTERM or Ctrl-C: waitress catches the interrupt itself
    except KeyboardInterrupt:
        pass
    finally:
        log.info("Shutting down: stopping running tasks")
        server.close()
        system.stop()
        log.info("Stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
