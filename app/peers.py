"""Refuse HTTP connections that come from sandboxed task code.

When the service runs as root, each task's code runs under a uid leased from
`engine.sandbox_uids()`. With network access that code could call this API
on loopback (cancel other tasks, POST /admin/cleanup, read every result), so a
connection whose other end belongs to one of those uids is answered
``403 {"detail": "connections from sandboxed task code are refused"}`` and
closed before waitress reads anything from it.

The owner of the other end is found by socket_owner.py (netlink sock_diag,
or /proc/net/tcp{,6}), once per connection, never per request, and only for
connections from this host. A connection from this host whose owner cannot
be found is refused too. Where the kernel cannot be asked at all, the check
is skipped, with a warning.

The check hooks into waitress through its channel class (`handle_accept`
builds one `channel_class(server, sock, addr, adj, map=...)` per accepted
connection), so it works for the servers we build (`python -m app`,
`python -m app.serve`), not under `waitress-serve`.
"""

from __future__ import annotations

import json
import logging
import os
import socket

from waitress.channel import HTTPChannel

from .socket_owner import UnknownOwner, peer_uid

log = logging.getLogger("aipy.server")

REFUSAL_DETAIL = "connections from sandboxed task code are refused"
_BODY = json.dumps({"detail": REFUSAL_DETAIL}).encode()
REFUSAL = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_BODY)
) + _BODY
#: Request bytes read and dropped before closing: closing a socket with unread
#: data sends a reset, which can make the client lose the 403.
DRAIN_BYTES = 65536


def sandbox_uids_to_refuse(engine_settings) -> range | None:
    """The uids whose connections are refused: the sandbox range when the
    service runs as root (only then does task code run under them), else none."""
    return engine_settings.sandbox_uids() if os.geteuid() == 0 else None


def refusing_peers(channel: type[HTTPChannel], uids: range) -> type[HTTPChannel]:
    """`channel` (a waitress channel class) made to refuse connections whose
    peer runs as a uid in `uids`; a server uses it once set as its
    `channel_class`. A channel that checks already gets `uids` instead."""
    bases = (channel,) if issubclass(channel, PeerCheckingChannel) else (PeerCheckingChannel, channel)
    return type("PeerCheckingChannel", bases, {"refused_uids": uids})


class PeerCheckingChannel(HTTPChannel):
    """An HTTPChannel that first looks at who is on the other end."""

    refused_uids: range = range(0)

    def __init__(self, server, sock, addr, adj, map=None):
        if self._refuses(sock):
            refuse(sock)
            return  # never registered with the loop: waitress forgets it
        super().__init__(server, sock, addr, adj, map=map)

    def _refuses(self, sock: socket.socket) -> bool:
        try:
            uid = peer_uid(sock)
        except UnknownOwner:
            log.warning("Refused a connection from this host whose owner cannot be found")
            return True
        except OSError as exc:  # neither netlink nor /proc can be read
            log.warning("Cannot tell who owns a connection from this host (%s); serving it", exc)
            return False
        if uid is not None and uid in self.refused_uids:
            log.warning("Refused a connection from sandboxed task code (uid %d)", uid)
            return True
        return False


def refuse(sock: socket.socket) -> None:
    """Answer 403 and close, without ever blocking the server's loop."""
    try:
        sock.setblocking(False)
        sock.send(REFUSAL)  # a fresh socket's send buffer takes it whole
        sock.recv(DRAIN_BYTES)
    except OSError:
        pass
    finally:
        sock.close()
