"""`python -m app.serve`: the Procfile's `web` process.

The app of `app.wsgi` (configuration from the environment and the config
files), served on 0.0.0.0:$PORT (default 8848) by the same waitress server as
`python -m app --agent`: its threads, body size, connection limit and idle
timeout come from the settings, and as root it refuses connections from
sandboxed task code. `waitress-serve app.wsgi:app` still works, but cannot
install that last check (see peers.py).
"""

from __future__ import annotations

import os
import sys

#: The web process serves every interface: the platform routes to it.
HOST = "0.0.0.0"


def main() -> int:
    from .cli import serve
    from .wsgi import app, system

    port = int(os.environ.get("PORT") or 8848)
    print(f"Serving HTTP on {HOST}:{port}", flush=True)
    return serve(app, system, HOST, port)


if __name__ == "__main__":
    sys.exit(main())
