"""`python -m app.serve`: the Procfile's `web` process.

The same app as `app.wsgi` (configuration from the environment and the
config files), served on 0.0.0.0:$PORT (default 8848) by the same waitress
server as `python -m app --agent`: its threads, body size, connection limit
and idle timeout come from the settings, and as root it refuses connections
from sandboxed task code. `waitress-serve app.wsgi:app` still works, but
cannot install that last check (see peers.py).

With REDIS_URL it runs no tasks: the `worker` processes take them from the
queue, and the banner and /health say so. Without it, it is the whole
service (embedded mode). It starts as `python -m app --agent` does
(launch.py): any failure is one `error:` line before "Serving HTTP".
"""

from __future__ import annotations

import os
import sys

#: The web process serves every interface: the platform routes to it.
HOST = "0.0.0.0"


def main() -> int:
    from actors.entry import StartupFailure, open_process, report

    from .launch import fail, listen, serve, tasks_elsewhere

    try:
        system = open_process()
    except StartupFailure as failure:
        return report(failure)
    port = int(os.environ.get("PORT") or 8848)
    # Over Redis the worker processes run the tasks; embedded, only this one can.
    run_tasks = system.embedded
    try:
        server = listen(system, HOST, port, run_tasks=run_tasks)
    except StartupFailure as failure:
        return fail(system, failure)
    system.start_in_process(run_tasks=run_tasks)
    print(f"Serving HTTP on {HOST}:{port}", flush=True)
    if not run_tasks:
        print(f"This process runs no tasks: {tasks_elsewhere(system)}", flush=True)
    return serve(server, system)


if __name__ == "__main__":
    sys.exit(main())
