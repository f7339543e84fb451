"""The WSGI entry point: `python -m app.serve` (the Procfile's `web` process)
serves this app; any WSGI server can (`waitress-serve app.wsgi:app`), but only
our own (app.serve, `python -m app`) refuse connections from sandboxed task
code (see peers.py).
Configuration comes from the environment and config files.

With REDIS_URL this process only serves HTTP and sends tasks to Redis, where
the `worker` processes run them. Without it there would be no one to run the
tasks, so the embedded workers and the cleanup schedule start here too.
"""

from actors.entry import system_from_config

from .factory import create_app

system = system_from_config()  # a failure is one `error:` line, as from every entry point
system.start_in_process(run_tasks=False)
app = create_app(system)
