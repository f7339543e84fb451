"""GET /ui: the dashboard, a page that lists tasks, follows one live,
submits and cancels, all through the JSON API (see app/ui/).

The page's files ship in the package (app/ui/) and are read once, when the
app is built: they are a few kilobytes, and only the files found there then
are served, so no request can name a path outside that folder. They hold
no task data, so they are served without the API token (app/auth.py); the
page asks for the token and sends it with each API call it makes.

Every answer carries a strict Content-Security-Policy: the page shows text
that a model and its code wrote, so only its own scripts may run, it may
talk to this server alone, and no other site may frame it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import falcon

#: The page, with the path prefix its own files are served under.
PAGE = "/ui"


def is_dashboard(path: str) -> bool:
    """Is `path` the page or one of its files (`/ui`, `/ui/...`)?"""
    return path == PAGE or path.startswith(PAGE + "/")
INDEX = "index.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# img-src allows blob: for the previews of image files the page fetched
# (an <img> never runs a script, not even an SVG's). Forms are sent by the
# page's script, never by the browser, so form-action is 'none'.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (cheap: an ETag match is a 304), so an
    # upgraded server's page is never mixed with an old cached script.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(package: str = "app", folder: str = "ui") -> dict[str, Asset]:
    """The page's files by name, read from `folder` inside `package`
    (default app/ui): those of a type in CONTENT_TYPES, sub-folders not
    included."""
    assets = {}
    for entry in (resources.files(package) / folder).iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in CONTENT_TYPES:
            body = entry.read_bytes()
            assets[entry.name] = Asset(body, CONTENT_TYPES[suffix], hashlib.sha256(body).hexdigest()[:32])
    if INDEX not in assets:
        raise RuntimeError(f"the dashboard's {INDEX} is missing from {package}/{folder}: reinstall the package")
    return assets


class DashboardAsset:
    """GET /ui (the page) and GET /ui/{name} (its scripts, styles, icon)."""

    def __init__(self, assets: dict[str, Asset]):
        self.assets = assets

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str = INDEX) -> None:
        asset = self.assets.get(name)
        if asset is None:
            raise falcon.HTTPNotFound(description=f"the dashboard has no file {name!r}; open {PAGE}")
        resp.set_headers(SECURITY_HEADERS)
        resp.etag = asset.etag
        if req.if_none_match and any(tag == asset.etag for tag in req.if_none_match):
            resp.status = falcon.HTTP_304
            return
        resp.content_type = asset.content_type
        resp.data = asset.body


def add_dashboard(app: falcon.App) -> None:
    """Serve the dashboard at /ui."""
    resource = DashboardAsset(load_assets())
    app.add_route(PAGE, resource)
    app.add_route(PAGE + "/{name}", resource)
