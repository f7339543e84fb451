"""The waitress server, built the same way wherever one runs: `python -m app`,
`python -m app.serve` (the Procfile's web process) and the tests.

Its settings (`settings.json` or AIPYTHON_<NAME>):
- threads: `http_threads + max_streams` (see waiting.py);
- max_request_body_size: `max_body_bytes + max_upload_bytes` (a multipart
  submit's files may pass max_body_bytes; the app refuses a JSON body over
  max_body_bytes once read), so waitress does not buffer up to its own 1 GB
  before the app could refuse a body;
- connection_limit: `http_connection_limit` (default 1000). At the limit
  waitress stops accepting, so its own default of 100 let 100 idle clients
  take the API down;
- channel_timeout: `http_channel_timeout_s` (default 60), after which an idle
  keep-alive connection is closed (a request in progress never is);
- poll() instead of select(): select() cannot watch a descriptor numbered
  1024 or more, which a server holding 1000 connections has.

It also raises the process's open-file limit to what the system allows, so
that many connections fit; answers the errors waitress gives itself (a body
over the limit, a malformed request) as JSON `{"detail": ...}` like every
other error; and, where `refused_uids` is given, refuses connections from
sandboxed task code (see peers.py).

`serve_until` serves in the calling thread until an event is set, for a
server that another thread stops (the tests' live server).
"""

from __future__ import annotations

import json
import logging
import resource
import threading

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer
from waitress.task import ErrorTask

from .peers import refusing_peers
from .waiting import server_threads

log = logging.getLogger("aipy.server")

#: How often waitress looks for idle connections to close, at most (seconds).
MAX_CLEANUP_INTERVAL_S = 30


def build_server(app, settings, *, host: str, port: int, refused_uids: range | None,
                 **adjustments) -> BaseWSGIServer | MultiSocketServer:
    """A waitress server for `app` on host:port with the service's settings;
    `adjustments` adds or overrides waitress options.
    Connections whose peer runs as a uid in `refused_uids` are refused."""
    raise_open_file_limit()
    timeout = settings.http_channel_timeout_s
    options = dict(
        host=host, port=port, threads=server_threads(settings), ident="aipy-agent",
        max_request_body_size=settings.max_request_bytes,
        connection_limit=settings.http_connection_limit,
        channel_timeout=timeout,
        # waitress closes idle connections only when it looks, every
        # cleanup_interval (30 s by default): look often enough for the timeout.
        cleanup_interval=max(1, min(MAX_CLEANUP_INTERVAL_S, timeout // 2)),
        asyncore_use_poll=True,
    )
    options.update(adjustments)
    server = create_server(app, **options)
    # waitress builds one channel_class(server, sock, addr, adj, map=...) per
    # accepted connection: ours answers errors as JSON and checks the peer.
    channel = refusing_peers(JsonErrorChannel, refused_uids) if refused_uids else JsonErrorChannel
    for listener in listeners(server):
        listener.channel_class = channel
    return server


def serve_until(server: BaseWSGIServer | MultiSocketServer, stop: threading.Event,
                poll_s: float = 0.05) -> None:
    """Serve `server` in the calling thread until `stop` is set (or an
    exception such as KeyboardInterrupt ends the loop), then close it, in
    this same thread; a stop takes effect within `poll_s` seconds (default
    0.05).

    waitress's `run()` returns only on SIGTERM or Ctrl-C in its own thread,
    and closing the server from another thread races its poll loop (a socket
    closed while poll() watches it). So the loop runs here in turns of at
    most `poll_s` seconds, looking at `stop` between turns."""
    sockets = _socket_map(server)
    try:
        while not stop.is_set():
            wasyncore.loop(timeout=poll_s, map=sockets, use_poll=server.adj.asyncore_use_poll, count=1)
    finally:
        # The task threads go first (a request being answered gets up to 5 s
        # to finish): closed under one, the wake-up pipe fails its next write
        # (EBADF). Then every socket: a single server's own close() would
        # leave its threads and its connections open.
        server.task_dispatcher.shutdown()
        wasyncore.close_all(sockets)


def _socket_map(server: BaseWSGIServer | MultiSocketServer) -> dict:
    """Every socket waitress polls for `server` (its listeners, its wake-up
    pipe, its connections): the map that `create_server` filled. A single
    server keeps it as asyncore dispatchers do, in `_map`; waitress has no
    public name for it, so this is the one place that reads it."""
    if isinstance(server, MultiSocketServer):
        return server.map
    return server._map


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each connection holds
    a descriptor, and the soft limit is often 1024); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # a container may refuse it
        log.warning("Could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard


def listeners(server: BaseWSGIServer | MultiSocketServer) -> list[BaseWSGIServer]:
    """The listening servers inside what `create_server` returned: itself,
    or, for several addresses (a name that resolves to IPv4 and IPv6), the
    ones its MultiSocketServer holds."""
    if isinstance(server, BaseWSGIServer):
        return [server]
    return [item for item in server.map.values() if isinstance(item, BaseWSGIServer)]


class JsonErrorTask(ErrorTask):
    """waitress's own error answers, as JSON `{"detail": ...}`."""

    def execute(self) -> None:
        error = self.request.error
        if error.code == 413:
            limit = self.channel.server.adj.max_request_body_size
            detail = f"request body exceeds the limit of {limit} bytes (max_body_bytes + max_upload_bytes)"
        else:
            detail = f"{error.reason}: {error.body}"
        body = json.dumps({"detail": detail}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask
