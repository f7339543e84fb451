"""The guarded HTTP transport of task callbacks: an httpx POST that only
ever connects to an address the callback target rules permit.

Why the check sits in the network backend: judging the URL's host before the
request is not enough. A name can resolve to a public address when it is
checked and to 127.0.0.1 a moment later when the socket connects (DNS
rebinding), or to several addresses of which only some are private. So
`GuardedBackend.connect_tcp`, which httpcore calls to open every connection,
resolves the name itself, drops each address the rules refuse, and connects
to a remaining one by number. TLS is unaffected: httpcore hands the URL's
host name, not the address, to ``start_tls`` as ``server_hostname``, so SNI
and certificate verification work as for any https request.

Proxies from the environment are ignored (``trust_env=False``): a proxy
opens the real connection itself, to an address this process never sees.
Certificates are verified with certifi's bundle, or ``SSL_CERT_FILE`` /
``SSL_CERT_DIR`` when set (an internal CA for a listed internal host).

What a submitter may learn is coarse (`describe_failure`): whether the
attempt was refused by policy, could not connect, timed out, failed TLS, or
which HTTP status came back; never the exception text, which would turn
callbacks into a scanner of the internal network. The full text is for the
server log.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import typing
from typing import Callable, Sequence

import httpcore
import httpx

from .callback_targets import CallbackTargets, ip_literal

#: `resolve(host, port)` -> entries shaped like `socket.getaddrinfo`'s:
#: (family, type, proto, canonname, sockaddr). Injected by tests so a name
#: can "resolve" to 127.0.0.1 without touching DNS.
Resolver = Callable[[str, int], Sequence[tuple]]

# A name may resolve to many addresses; each unreachable one costs up to the
# connect timeout, so a hostile DNS answer could otherwise hold a callback
# worker for many minutes.
MAX_ADDRESSES_TRIED = 4


class DestinationRefused(Exception):
    """The target's addresses are all refused by the callback rules. `reason`
    is fit to show the submitter (it names no address DNS gave us)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def system_resolve(host: str, port: int) -> Sequence[tuple]:
    """The system resolver, asked for TCP addresses only."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


class GuardedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that connects only to permitted
    addresses; the actual connecting is left to `inner` (default: httpcore's
    own `SyncBackend`), always given an IP address, never a name."""

    def __init__(self, targets: CallbackTargets, *, resolve: Resolver = system_resolve,
                 inner: httpcore.NetworkBackend | None = None):
        self.targets = targets
        self.resolve = resolve
        self.inner = inner or httpcore.SyncBackend()

    def permitted_addresses(self, host: str, port: int) -> list[str]:
        """The addresses of `host` a callback may connect to, in resolver
        order, without duplicates. Raises DestinationRefused when DNS gave
        addresses but none is permitted, httpcore.ConnectError when DNS
        failed."""
        try:
            entries = self.resolve(host, port)
        except OSError as exc:  # socket.gaierror: unknown name, DNS down
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        permitted: list[str] = []
        refused: list[str] = []
        for entry in entries:
            address = ip_literal(str(entry[4][0]).split("%", 1)[0])
            if address is None:
                continue
            problem = self.targets.address_problem(address, host)
            text = str(entry[4][0])  # keeps an IPv6 scope (%eth0) for connecting
            if problem is None:
                if text not in permitted:
                    permitted.append(text)
            else:
                refused.append(problem)
        if permitted:
            return permitted
        if not refused:
            raise httpcore.ConnectError(f"no usable address for {host!r}")
        if ip_literal(host) is not None:
            raise DestinationRefused(refused[0])  # the submitter wrote this address
        raise DestinationRefused(f"host {host!r} resolves to no public address; "
                                 "list it in callback_allowed_hosts to allow it")

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
                    ) -> httpcore.NetworkStream:
        """Connect to the first reachable permitted address of `host`."""
        options = list(socket_options or ())  # may be an iterator; used once per address
        failure: Exception | None = None
        for address in self.permitted_addresses(host, port)[:MAX_ADDRESSES_TRIED]:
            try:
                return self.inner.connect_tcp(address, port, timeout=timeout,
                                              local_address=local_address, socket_options=options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # permitted_addresses never returns an empty list
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
                            ) -> httpcore.NetworkStream:
        raise DestinationRefused("callbacks go over TCP only")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport (its request and exception mapping) over a
    connection pool that uses `backend`. httpx has no parameter for the
    network backend yet, so the pool it built is replaced; the check makes a
    future httpx that renames the pool fail loudly rather than connect
    unguarded."""

    def __init__(self, backend: httpcore.NetworkBackend, ssl_context: ssl.SSLContext):
        super().__init__(verify=ssl_context, trust_env=False, http1=True, http2=False)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            raise RuntimeError("this httpx version cannot take a guarded network backend; "
                               "callbacks would connect unchecked")
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=backend,
                                             max_connections=1, http1=True, http2=False)


class GuardedPost:
    """The default callback POST (a `callbacks.PostFn`): ``post(url, body,
    headers, timeout_s) -> HTTP status``, redirects never followed, the answer
    body never read, ``user:pass@`` in `url` sent as HTTP Basic auth. Raises
    DestinationRefused, or an httpx error when no status could be had."""

    def __init__(self, backend: GuardedBackend, *, ssl_context: ssl.SSLContext | None = None):
        self.backend = backend
        self._ssl_context = ssl_context

    def _context(self) -> ssl.SSLContext:
        # Built on first use, not at start: loading the CA bundle costs tens
        # of milliseconds that a web process that never calls back need not pay.
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    def __call__(self, url: str, body: bytes, headers: dict, timeout_s: float) -> int:
        target = httpx.URL(url)
        # httpx would take the credentials from the URL itself, but it also
        # logs the URL it requests, password included; given as auth=, they
        # are only ever sent in its Basic Authorization header.
        auth = (target.username, target.password) if target.userinfo else None
        target = target.copy_with(username=None, password=None)
        transport = _GuardedTransport(self.backend, self._context())
        with httpx.Client(transport=transport, trust_env=False, follow_redirects=False,
                          timeout=httpx.Timeout(timeout_s)) as client:
            with client.stream("POST", target, content=body, headers=headers, auth=auth) as response:
                return response.status_code


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from or while handling."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def describe_failure(exc: BaseException) -> str:
    """The coarse outcome of a failed attempt, for the task's log: one of a
    few fixed phrases, never the exception's own text."""
    if isinstance(exc, DestinationRefused):
        return f"refused by policy: {exc.reason}"
    chain = _chain(exc)

    def caused_by(*kinds: type) -> bool:
        return any(isinstance(e, kinds) for e in chain)

    if caused_by(httpx.TimeoutException, httpcore.TimeoutException, TimeoutError):
        return "timed out"
    if caused_by(ssl.SSLError, ssl.CertificateError):
        return "TLS failed"
    if caused_by(socket.gaierror):
        return "could not resolve the host name"
    if caused_by(httpx.ConnectError, httpcore.ConnectError, ConnectionRefusedError):
        return "could not connect"
    if caused_by(httpx.ProtocolError, httpcore.ProtocolError, http.client.HTTPException):
        return "invalid or incomplete HTTP answer"
    if caused_by(httpx.InvalidURL, httpx.UnsupportedProtocol):
        return "invalid URL"
    if caused_by(httpx.TransportError, OSError):
        return "connection failed"
    return "delivery failed"
