"""Refuse requests that a web page in someone's browser made, not our caller.

A page on any site can make a browser send requests to this server: to
127.0.0.1 on the browser's own machine, or to any host it can reach. The
browser will not show the answer to that page (CORS), but a POST or DELETE
has done its damage by then (cross-site request forgery), and a page whose
host name is made to resolve to 127.0.0.1 (DNS rebinding) even counts as the
server's own origin, answers included. `RequestOriginGuard`, a Falcon
middleware that runs before routing, refuses them:

- Host (only while no API token is set; a rebinding page cannot know the
  token): the Host header must name a loopback address (``localhost``,
  ``127.x.x.x``, ``[::1]``, any port) or a name in `allowed_hosts`
  (AIPYTHON_ALLOWED_HOSTS; ``*`` allows any, ``*.example.com`` any name under
  it), else 403. A request with no Host header at all passes: every browser
  sends one. ``/health`` is exempt so load balancers can probe it under any
  name: it holds no task data and changes nothing.
- Origin, on state-changing methods (POST, PUT, PATCH, DELETE): an ``Origin``
  header must be the server's own (its host and port are the request's
  Host; the scheme is not compared, see `is_own_origin`) or in
  `cors_origins` (``*`` allows any), else 403. With no Origin,
  ``Sec-Fetch-Site: cross-site`` is refused too. Browsers send Origin on
  every cross-origin POST, form posts included; curl, the SDK and n8n send
  none and are not affected.
- Body type, on the same methods: a body (Content-Length above 0, or
  chunked) must be declared ``application/json`` or ``application/*+json``,
  else 415. Those types make a browser ask first (a CORS preflight), which
  `cors_origins` governs; the types a page may send without asking (forms,
  text/plain) never reach a handler. A POST with no body at all (``curl -X
  POST .../admin/cleanup?max_age_hours=1``) is still allowed.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import falcon

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Paths served under any Host: they hold no data and change nothing.
ANY_HOST_PATHS = frozenset({"/health"})
DEFAULT_PORTS = {"http": 80, "https": 443}
#: Host header values whose answer is remembered before the memory starts over.
HOST_CACHE_SIZE = 256


class RequestOriginGuard:
    """`cors_origins`: origins allowed to make state-changing requests besides
    the server's own (``["*"]``: any). `allowed_hosts`: Host names served
    besides loopback ones, or None to serve any Host (an API token is set).
    `form_routes`: the (method, path) pairs that also take a
    multipart/form-data body (default none). A form is a body a page may
    send without asking first, so only routes that need one take it, after
    the same Host and Origin checks (a foreign page's form carries its
    Origin and is refused)."""

    def __init__(self, cors_origins: list[str], allowed_hosts: list[str] | None,
                 form_routes: frozenset[tuple[str, str]] = frozenset()):
        self.form_routes = form_routes
        self.any_origin = "*" in cors_origins
        self.origins = {normalize_origin(origin) for origin in cors_origins if origin != "*"}
        self.check_host = allowed_hosts is not None and "*" not in allowed_hosts
        names = [host_name(host) for host in allowed_hosts or []]
        self.host_names = {name for name in names if name and not name.startswith("*.")}
        self.host_suffixes = tuple(name[1:] for name in names if name and name.startswith("*."))
        self._served_hosts: dict[str, bool] = {}  # Host header -> served (see _check_host)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.check_host and req.path not in ANY_HOST_PATHS:
            self._check_host(req)
        if req.method in STATE_CHANGING:
            self._check_origin(req)
            self._check_body_type(req)

    def _check_host(self, req: falcon.Request) -> None:
        host = req.get_header("Host")
        if host is None:
            return
        served = self._served_hosts.get(host)
        if served is None:
            # Parsed once per Host value: a client sends the same one every time.
            if len(self._served_hosts) >= HOST_CACHE_SIZE:
                self._served_hosts.clear()
            served = self._served_hosts[host] = self._serves(host_name(host))
        if served:
            return
        raise falcon.HTTPForbidden(description=(
            f"requests for host {host!r} are refused: with no API token only loopback names are served; "
            "add the name to allowed_hosts (AIPYTHON_ALLOWED_HOSTS) or set an API token (AIPYTHON_API_TOKEN)"))

    def _serves(self, name: str) -> bool:
        if is_loopback_name(name) or name in self.host_names:
            return True
        return any(name.endswith(suffix) for suffix in self.host_suffixes)

    def _check_origin(self, req: falcon.Request) -> None:
        origin = req.get_header("Origin")
        if origin is None:
            if (req.get_header("Sec-Fetch-Site") or "").lower() == "cross-site":
                raise falcon.HTTPForbidden(description=(
                    "cross-site request refused; allow its origin in cors_origins (AIPYTHON_CORS_ORIGINS)"))
            return
        if self.any_origin:
            return
        if normalize_origin(origin) in self.origins or is_own_origin(origin, req.get_header("Host")):
            return
        raise falcon.HTTPForbidden(description=(
            f"cross-origin request from {origin!r} refused; to allow it, add that origin to cors_origins "
            "(AIPYTHON_CORS_ORIGINS)"))

    def _check_body_type(self, req: falcon.Request) -> None:
        chunked = "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
        if not chunked and not req.content_length:
            return
        if is_json_type(req.content_type):
            return
        takes_forms = (req.method, req.path) in self.form_routes
        if takes_forms and is_multipart(req.content_type):
            return
        declared = (req.content_type or "").split(";")[0].strip()
        raise falcon.HTTPUnsupportedMediaType(description=(
            f"send a JSON body with the header Content-Type: application/json, or no body at all "
            f"(got {declared or 'none'!r})" + ("; with files, send multipart/form-data" if takes_forms else "")))


def media_type(content_type: str | None) -> str:
    """A Content-Type's media type, lower case, without parameters."""
    return (content_type or "").split(";")[0].strip().lower()


def is_json_type(content_type: str | None) -> bool:
    """application/json or application/<anything>+json, parameters ignored."""
    kind, _, subtype = media_type(content_type).partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def is_multipart(content_type: str | None) -> bool:
    """multipart/form-data, parameters (the boundary) ignored."""
    return media_type(content_type) == "multipart/form-data"


def host_name(host: str) -> str:
    """The name in a Host header (or an allowed_hosts entry): lower case,
    without port, brackets or a final dot."""
    return split_host(host)[0]


def split_host(host: str) -> tuple[str, int | None]:
    """(name, port or None) of a Host header: ``[::1]:8848`` gives ("::1", 8848)."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    else:  # no port, or a bare IPv6 address
        name, port = host, ""
    return name.rstrip("."), int(port) if port.isdigit() else None


def is_loopback_name(name: str) -> bool:
    if name in ("localhost", "127.0.0.1", "::1"):  # the usual ones, without parsing
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def normalize_origin(origin: str) -> str:
    """scheme://host[:port] in lower case, the scheme's default port left out
    (browsers leave it out; a configured origin may not)."""
    origin = origin.strip().lower().rstrip("/")
    endpoint = origin_endpoint(origin)
    if endpoint is None:
        return origin  # "null" and other opaque origins: compared as they are
    scheme = origin.partition(":")[0]
    name, port = endpoint
    host = f"[{name}]" if ":" in name else name
    return f"{scheme}://{host}" if port == DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def origin_endpoint(origin: str) -> tuple[str, int] | None:
    """(host name, port) of an http(s) origin, or None for any other."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.hostname.rstrip("."), port or DEFAULT_PORTS[parts.scheme]


def is_own_origin(origin: str, host: str | None) -> bool:
    """Whether `origin` names the host and port the request was sent to (its
    Host header). The scheme is not compared: behind a proxy that ends TLS
    the server sees http while the page is https, and waitress drops the
    X-Forwarded-Proto that would say so unless told to trust the proxy."""
    endpoint = origin_endpoint(origin)
    if endpoint is None or not host:
        return False
    name, port = split_host(host)
    default = DEFAULT_PORTS[origin.strip().lower().partition(":")[0]]
    return (name, port or default) == endpoint
