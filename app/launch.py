"""Starting and running an HTTP process: `python -m app --agent` (cli.py)
and `python -m app.serve` (serve.py), the same way.

Everything that can stop the start is tried before anything says the
server is ready and before any worker or schedule starts: the configuration
and the data folder (actors/entry.py), then here the listening socket
(bound before the banner, so a busy port is the only thing said) and, when
this process runs tasks, the sandbox. A failure is one `error:` line on
stderr and a non-zero exit (see actors/entry.py for the statuses).
"""

from __future__ import annotations

import logging
import signal

from actors import TaskSystem
from actors.entry import HOST_ERROR, StartupFailure, check_sandbox, report

from .factory import create_app
from .http_server import build_server
from .peers import sandbox_uids_to_refuse

log = logging.getLogger("aipy.server")


def listen(system: TaskSystem, host: str, port: int, *, run_tasks: bool):
    """The waitress server for `system`'s app, bound to host:port and not
    serving yet; with `run_tasks`, the sandbox chosen too. StartupFailure
    when the address cannot be bound or no sandbox tier runs code here."""
    settings = system.settings
    try:
        server = build_server(create_app(system), settings, host=host, port=port,
                              refused_uids=sandbox_uids_to_refuse(settings.engine))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupFailure(f"cannot listen on {host}:{port}: {reason}; choose another port (--port or PORT)",
                             HOST_ERROR) from None
    if run_tasks:
        try:
            check_sandbox(system)
        except StartupFailure:
            server.close()
            raise
    return server


def fail(system: TaskSystem, failure: StartupFailure) -> int:
    """Stop what `system` holds and report `failure`; its exit status."""
    system.stop()
    return report(failure)


def tasks_elsewhere(system: TaskSystem) -> str:
    """Where the tasks of a process that runs none go, for its banner."""
    seen = system.health.workers_seen()
    now = "unknown: Redis does not answer" if seen is None else str(seen)
    return (f"worker processes (python -m actors.worker) take them from the Redis queue "
            f"{system.redis_link.where} (seen now: {now})")


def serve(server, system: TaskSystem) -> int:
    """Serve until SIGTERM or Ctrl-C, then stop the workers: running tasks
    end as errors and the process exits well within 10 seconds. As root,
    connections from sandboxed task code are refused (see peers.py)."""

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
