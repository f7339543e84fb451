"""Which hosts and addresses a task callback may target.

Why: a callback is a request this server makes to a URL a submitter chose.
Left open, it reaches whatever the server can reach: its own loopback
services, the private network, the cloud metadata service at
169.254.169.254. So by default only public addresses are callback targets.

The rules, from the ``callback_allowed_hosts`` setting (default: empty):

- Empty list: any host, as long as every address it is connected to is
  public (``public_address``): not loopback, private (10/8, 172.16/12,
  192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), unspecified,
  multicast, shared (100.64/10), reserved or documentation space. IPv6
  forms that lead to an IPv4 host (IPv4-mapped ``::ffff:a.b.c.d``, the NAT64
  prefix ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by that IPv4
  address.
- Non-empty list: only the hosts it lists, exactly as before (a public host
  that is not listed is refused too). An entry is one of
  ``n8n.example.com`` (that name exactly, any case), ``*.example.com`` (any
  name below example.com, not example.com itself), ``*`` (any name),
  ``10.0.0.7`` / ``::1`` (that address) or ``10.0.0.0/8`` (any address in
  that network). A URL whose host is an IP address needs an address or
  network entry that contains it.
- Non-public addresses are allowed only when the operator said so: the
  URL's host is an exact name in the list (``localhost``: the name is
  trusted wherever it points), or the address lies in a listed address or
  network. A pattern (``*``, ``*.example.com``) widens which names are
  allowed, never which addresses: anyone who controls some subdomain's DNS
  could otherwise point it at 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "callback_allowed_hosts"
_PUBLIC_ONLY = f"callbacks go to public addresses only, unless the host is listed in {SETTING}"

# RFC 6052's well-known NAT64 prefix: the last 32 bits are the IPv4 host the
# translator connects to, so that host is what the address must be judged by.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# Names every resolver answers with loopback (RFC 6761, and the usual
# /etc/hosts lines), refused at submit time without asking DNS.
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

# Numbers the C resolver reads as IPv4 addresses although ipaddress does not
# (127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1): a URL host like that would
# connect to the address it spells, so it is judged as that address.
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$")

# A host name entry: no scheme, port, path or user, which a pasted URL has.
_NAME = re.compile(r"^[^\s:/@?#\[\]*]+$")


def normalize_name(name: str) -> str:
    """`name` as compared: lower case, no trailing dot, ASCII (IDNA), so the
    URL's spelling, the entry's and the name httpx connects to agree."""
    name = name.strip().lower().rstrip(".")
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:  # not IDNA-encodable: compare it as written
        return name


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells, if it is an IP address in any form the
    system resolver accepts, else None (it is a name)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:  # out of range: not an address after all
            return None
    return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 host an IPv6 address leads to, when it is IPv4-mapped,
    NAT64 or 6to4; None otherwise."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip.sixtofour


def public_address(ip: IPAddress) -> bool:
    """True when `ip` is a globally routable unicast address. `is_global`
    alone is not enough on Python 3.11: it counts multicast, fec0::/10 and
    6to4 wrappers of private addresses as global."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None or ip in _NAT64:
            # Only another spelling of an IPv4 destination: judge that one.
            return public_address(_embedded_ipv4(ip))
        if ip.sixtofour is not None and not public_address(ip.sixtofour):
            return False
        if ip.is_site_local:
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_private or ip.is_loopback or ip.is_link_local
                                 or ip.is_unspecified or ip.is_reserved)


def address_kind(ip: IPAddress) -> str:
    """What kind of non-public address `ip` is, for a refusal message."""
    ip = _embedded_ipv4(ip) or ip
    for test, kind in (("is_unspecified", "an unspecified"), ("is_loopback", "a loopback"),
                       ("is_link_local", "a link-local"), ("is_multicast", "a multicast"),
                       ("is_private", "a private"), ("is_reserved", "a reserved")):
        if getattr(ip, test):
            return f"{kind} address"
    return "not a public address"


@dataclass(frozen=True)
class CallbackTargets:
    """The parsed ``callback_allowed_hosts``; see the module docstring."""

    names: frozenset[str] = frozenset()      # exact names, trusted wherever they point
    suffixes: tuple[str, ...] = ()           # ".example.com" for "*.example.com"
    any_name: bool = False                   # "*"
    networks: tuple[IPNetwork, ...] = ()     # addresses and networks

    @classmethod
    def parse(cls, entries: Iterable[str]) -> CallbackTargets:
        """Read the setting's entries; raises ValueError naming a bad one."""
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        any_name = False
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                any_name = True
                continue
            if entry.startswith("*.") and _NAME.match(entry[2:]):
                suffixes.append("." + normalize_name(entry[2:]))
                continue
            try:
                # strict=False: "10.0.0.1/8" plainly means the network 10/8.
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            literal = ip_literal(entry)
            if literal is not None:
                networks.append(ipaddress.ip_network(literal))
            elif _NAME.match(entry):
                names.add(normalize_name(entry))
            else:
                raise ValueError(
                    f"{SETTING}: {raw!r} is not a host name, *.domain pattern, IP address or network "
                    "(give the host alone, e.g. n8n.example.com, 127.0.0.1 or 10.0.0.0/8)")
        return cls(frozenset(names), tuple(suffixes), any_name, tuple(networks))

    @property
    def restricted(self) -> bool:
        """True when only listed hosts may be targets."""
        return bool(self.names or self.suffixes or self.any_name or self.networks)

    def _in_networks(self, ip: IPAddress) -> bool:
        inner = _embedded_ipv4(ip)
        return any(ip in net or (inner is not None and inner in net) for net in self.networks)

    def _name_listed(self, name: str) -> bool:
        return self.any_name or name in self.names or any(name.endswith(s) for s in self.suffixes)

    def address_problem(self, ip: IPAddress, host: str) -> str | None:
        """Why the connection to `ip`, made for the URL host `host`, is
        refused, or None when it is allowed."""
        if public_address(ip) or self._in_networks(ip) or normalize_name(host) in self.names:
            return None
        return f"{ip} is {address_kind(ip)}; list it in {SETTING} to allow it"

    def host_problem(self, host: str) -> str | None:
        """Why a URL with host `host` is refused, judged without DNS (at
        submit time), or None. Names that need DNS are judged again, by
        their addresses, when the callback connects."""
        literal = ip_literal(host)
        name = normalize_name(host)
        if self.restricted:
            if literal is not None:
                listed = self.any_name or self._in_networks(literal)
            else:
                listed = self._name_listed(name)
            if not listed:
                return f"host {host!r} is not in the allowed callback hosts ({SETTING})"
        if literal is not None and self.address_problem(literal, host) is not None:
            return f"host {host!r} is {address_kind(literal)}; {_PUBLIC_ONLY}"
        if (name in _LOCAL_NAMES or name.endswith(".localhost")) and name not in self.names:
            return f"host {host!r} is a local name; {_PUBLIC_ONLY}"
        return None
