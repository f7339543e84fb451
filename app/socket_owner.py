"""Which user owns the other end of a TCP connection made from this host.

`peer_uid(sock)` answers for an accepted socket: the uid of the process's
socket at the other end, when that end is on this host. Only such
connections are looked up:
- surely local: the peer or our end is a loopback address, or the peer's
  address is the one it connected to. Code can bind any address of the host
  as its source and still connect to 127.0.0.1, so "the peer is loopback"
  alone would miss it. A surely local peer whose socket cannot be found
  raises UnknownOwner (it has usually hung up already);
- maybe local: any other peer address assigned to this host (a bind() to it
  succeeds). Its socket is looked for, but a miss is no error: with
  net.ipv*.ip_nonlocal_bind on, that bind succeeds for remote addresses too.

The kernel is asked in one of two ways, in the server's network namespace:
- sock_diag over netlink (SOCK_DIAG_BY_FAMILY): an exact lookup by the
  connection's addresses and ports, some 20 microseconds;
- /proc/net/tcp and /proc/net/tcp6: the row whose local address is the
  peer's address:port and whose remote address is ours, `uid` column. The
  kernel walks its whole connection table to print these files, which takes
  milliseconds (6 ms measured on a host with a few hundred sockets), so they
  are the fallback, used only when netlink cannot find even our own end of
  the connection (no netlink, or a kernel without the tcp_diag module,
  which answers "not found" for everything).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import sys

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Endpoint = tuple[Address, int]

PROC_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
# From linux/netlink.h, linux/sock_diag.h and linux/inet_diag.h.
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, seq, pid
DIAG_REQUEST = struct.Struct("=BBBxI")  # family, protocol, ext, pad, states
NO_COOKIE = 0xFFFFFFFF
#: Offset of idiag_uid in a reply: header, then family/state/timer/retrans
#: (4), the socket id (48), expires, rqueue, wqueue (12).
UID_OFFSET = NLMSG_HEADER.size + 4 + 48 + 12


class UnknownOwner(LookupError):
    """The peer is surely on this host, but no socket of it was found."""


def peer_uid(sock: socket.socket) -> int | None:
    """The uid owning the other end of the connected TCP socket `sock`, or
    None when that end is not on this host (or, maybe local, not found).
    UnknownOwner: see the module's docstring. OSError when neither netlink
    nor /proc can be read."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        peer, ours = _endpoint(sock.getpeername()), _endpoint(sock.getsockname())
    except OSError:  # the peer hung up already: it can send nothing
        return None
    surely_local = peer[0].is_loopback or ours[0].is_loopback or peer[0] == ours[0]
    if not surely_local and not _assigned_here(peer[0]):
        return None
    uid = uid_by_sock_diag(peer, ours)
    if uid is None and uid_by_sock_diag(ours, peer) is None:  # netlink cannot see: ask /proc
        uid = uid_from_proc_tables(peer, ours)
    if uid is None and surely_local:
        raise UnknownOwner(f"{peer[0]}:{peer[1]}")
    return uid


def uid_by_sock_diag(local: Endpoint, remote: Endpoint) -> int | None:
    """The uid of the TCP socket bound to `local` and connected to `remote`,
    asked of the kernel over netlink; None when it says none, or cannot."""
    family = socket.AF_INET if local[0].version == 4 else socket.AF_INET6
    socket_id = (struct.pack("!HH", local[1], remote[1]) + local[0].packed.ljust(16, b"\0")
                 + remote[0].packed.ljust(16, b"\0") + struct.pack("=III", 0, NO_COOKIE, NO_COOKIE))
    body = DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF) + socket_id
    request = NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + body
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as link:
            link.settimeout(1)  # the kernel answers at once; never hang the server's loop
            link.sendto(request, (0, 0))
            reply = link.recv(8192)
    except OSError:
        return None
    if len(reply) < UID_OFFSET + 4 or NLMSG_HEADER.unpack_from(reply)[1] != SOCK_DIAG_BY_FAMILY:
        return None  # NLMSG_ERROR: ENOENT for no such socket
    return struct.unpack_from("=I", reply, UID_OFFSET)[0]


def uid_from_proc_tables(local: Endpoint, remote: Endpoint) -> int | None:
    """The uid of the TCP socket bound to `local` and connected to `remote`,
    read from /proc/net/tcp{,6}; None when no row matches. A table that is
    missing (no IPv6) is skipped; OSError when none can be read."""
    readable = False
    for table in PROC_TABLES:
        wanted = _row_key(table, local, remote)
        if wanted is None:
            continue
        try:
            with open(table, encoding="ascii") as rows:
                text = rows.read()
        except FileNotFoundError:
            continue
        readable = True
        uid = _uid_in(text, wanted)
        if uid is not None:
            return uid
    if not readable:
        raise OSError(errno.ENOENT, "no socket table to read", PROC_TABLES[0])
    return None


def _endpoint(address: tuple) -> Endpoint:
    """(address, port), an IPv4-mapped IPv6 address (::ffff:127.0.0.1) as
    the IPv4 one: the kernel keeps such connections as IPv4 ones."""
    ip = ipaddress.ip_address(address[0].partition("%")[0])
    return getattr(ip, "ipv4_mapped", None) or ip, address[1]


def _assigned_here(address: Address) -> bool:
    """Whether `address` is one of this host's: only those can be bound."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


def _row_key(table: str, local: Endpoint, remote: Endpoint) -> str | None:
    """" <local> <remote> " as a row of `table` shows them, or None when
    that table cannot hold them. An IPv4 connection may sit in either table:
    its socket may be an IPv6 one (shown with ::ffff: addresses)."""
    six = table.endswith("6")
    ends = []
    for address, port in (local, remote):
        if address.version == 4:
            packed = (b"\0" * 10 + b"\xff\xff" if six else b"") + address.packed
        elif six:
            packed = address.packed
        else:
            return None
        ends.append(f"{_hex_address(packed)}:{port:04X}")
    return f" {ends[0]} {ends[1]} "


def _hex_address(packed: bytes) -> str:
    # The kernel prints each 32-bit word of the address as a native integer.
    return "".join(f"{int.from_bytes(packed[i:i + 4], sys.byteorder):08X}" for i in range(0, len(packed), 4))


def _uid_in(text: str, wanted: str) -> int | None:
    """The uid column of the row holding `wanted` (local, then remote)."""
    at = text.find(wanted)
    if at < 0:
        return None
    end = text.find("\n", at)
    line = text[text.rfind("\n", 0, at) + 1:end if end >= 0 else len(text)]
    # sl local remote st tx:rx tr:when retrnsmt uid ...
    return int(line.split()[7])
