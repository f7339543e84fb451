"""Connections from sandboxed task code are refused (app/peers.py): the owner
of a connection's other end is asked of the kernel (app/socket_owner.py:
netlink sock_diag, or /proc/net/tcp{,6}), and a uid from the sandbox's range
gets a 403 and a closed connection. Every connection goes to 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
import requests

from app.peers import REFUSAL_DETAIL, refusing_peers
from app.socket_owner import _endpoint, peer_uid, uid_by_sock_diag, uid_from_proc_tables

#: An interpreter other uids may run (the tests' own lives under /root).
SYSTEM_PYTHON = Path("/usr/bin/python3")

CHILD = """
import sys, urllib.request
try:
    with urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"", method="POST"), timeout=10) as r:
        print("served", r.status)
except urllib.error.HTTPError as e:
    print("refused", e.code, e.read().decode())
except OSError as e:
    print("closed", type(e).__name__)
"""


def accepted_pair(client: socket.socket) -> tuple[socket.socket, socket.socket]:
    """`client` connected to a fresh listener on 127.0.0.1, and the server's end."""
    with closing(socket.create_server(("127.0.0.1", 0))) as listener:
        client.settimeout(5)
        client.connect(("127.0.0.1" if client.family == socket.AF_INET else "::ffff:127.0.0.1",
                        listener.getsockname()[1]))
        server_end, _ = listener.accept()
    return client, server_end


def local_addresses() -> list[str]:
    """This host's own IPv4 addresses other than loopback ones."""
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return []
    found = {previous.split()[-1] for previous, line in zip(lines, lines[1:]) if line.strip() == "/32 host LOCAL"}
    return sorted(address for address in found if not address.startswith("127."))


def test_the_owner_of_a_loopback_connection_is_found():
    client, server_end = accepted_pair(socket.socket(socket.AF_INET))
    with client, server_end:
        assert peer_uid(server_end) == os.geteuid()


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6-socket"])
def test_netlink_and_the_proc_tables_agree_on_the_owner(family):
    # An IPv6 socket connected to 127.0.0.1 sits in /proc/net/tcp6 as ::ffff:127.0.0.1.
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 sockets here")
    client, server_end = accepted_pair(socket.socket(family))
    with client, server_end:
        peer, ours = _endpoint(server_end.getpeername()), _endpoint(server_end.getsockname())
        assert uid_from_proc_tables(peer, ours) == os.geteuid()
        assert uid_by_sock_diag(peer, ours) in (os.geteuid(), None)  # None: no netlink sock_diag here
        missing = (peer[0], peer[1] ^ 1)  # no socket has that port pair
        assert uid_from_proc_tables(missing, ours) is None and uid_by_sock_diag(missing, ours) is None


def test_without_netlink_the_proc_tables_answer(monkeypatch):
    from app import socket_owner

    monkeypatch.setattr(socket_owner, "uid_by_sock_diag", lambda local, remote: None)
    client, server_end = accepted_pair(socket.socket(socket.AF_INET))
    with client, server_end:
        assert peer_uid(server_end) == os.geteuid()


def test_a_connection_from_another_address_of_this_host_is_looked_up():
    # Code can bind the host's own address as its source and still reach
    # 127.0.0.1: "the peer is loopback" alone would let it through.
    addresses = local_addresses()
    if not addresses:
        pytest.skip("this host has no non-loopback address")
    client = socket.socket(socket.AF_INET)
    client.bind((addresses[0], 0))
    client, server_end = accepted_pair(client)
    with client, server_end:
        assert server_end.getpeername()[0] == addresses[0]
        assert peer_uid(server_end) == os.geteuid()


def test_a_refused_uid_gets_a_json_403_and_a_closed_connection(server):
    own = os.geteuid()
    server.server.channel_class = refusing_peers(server.server.channel_class, range(own, own + 1))
    with socket.create_connection(("127.0.0.1", server.server.effective_port), timeout=5) as client:
        answer = b""
        while chunk := client.recv(4096):  # ends when the server closes
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ") and b"Connection: close" in head
    assert json.loads(body) == {"detail": REFUSAL_DETAIL}


def test_uids_outside_the_range_are_served(server):
    own = os.geteuid()
    server.server.channel_class = refusing_peers(server.server.channel_class, range(own + 1, own + 2))
    assert requests.get(f"{server.url}/tasks").status_code == 200


def test_sandboxed_code_cannot_call_the_api(start_server):
    if os.geteuid() != 0:
        pytest.skip("task code runs under the sandbox's uids only when the service runs as root")
    if not SYSTEM_PYTHON.exists():
        pytest.skip(f"{SYSTEM_PYTHON} is missing: no interpreter that other uids can run")
    server = start_server(workers=False)
    finished = server.store.create("finished long ago")["task_id"]
    server.store.transition(finished, "running")
    server.store.transition(finished, "completed")
    uid = server.config.settings.engine.sandbox_uids()[-1]

    child = subprocess.run(
        [str(SYSTEM_PYTHON), "-I", "-c", CHILD, f"{server.url}/admin/cleanup?max_age_hours=0"],
        user=uid, group=uid, extra_groups=[], cwd="/", env={}, capture_output=True, text=True, timeout=30,
    )
    assert child.returncode == 0, child.stderr
    outcome = child.stdout.split()[0]
    assert outcome in ("refused", "closed"), child.stdout
    if outcome == "refused":
        assert child.stdout.startswith(f"refused 403 {json.dumps({'detail': REFUSAL_DETAIL})}")
    assert requests.get(f"{server.url}/tasks/{finished}").status_code == 200  # nothing was cleaned up
