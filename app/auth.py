"""Bearer-token auth: with `api_token` set (AIPYTHON_API_TOKEN), every
request needs `Authorization: Bearer <token>`, except the health check (load
balancers probe it without credentials), CORS preflights, and, while
`public_docs` is on (the default), the API description pages, which hold no
task data. The dashboard's page and files (/ui) are always public: they are
the same static files for everyone, hold no task data, and the page asks for
the token itself, sending it with each API call. `/metrics` is public only
while `public_metrics` is on (default off: its counts say how busy the
service is and which routes are called). The token is compared in constant
time."""

from __future__ import annotations

import hmac

import falcon

from .resources.ui import is_dashboard

HEALTH = "/health"
DOCS_PATHS = ("/openapi.json", "/docs")
METRICS = "/metrics"


class BearerAuth:
    def __init__(self, token: str, *, public_docs: bool = True, public_metrics: bool = False):
        self.token = token.encode()
        self.public_docs = public_docs
        self.public_metrics = public_metrics

    def _is_public(self, req: falcon.Request) -> bool:
        if req.method == "OPTIONS" or req.path == HEALTH:
            return True
        if self.public_metrics and req.path == METRICS:
            return True
        if is_dashboard(req.path):
            return True
        return self.public_docs and any(req.path == p or req.path.startswith(p + "/") for p in DOCS_PATHS)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._is_public(req):
            return
        scheme, _, credentials = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), self.token):
            raise falcon.HTTPUnauthorized(
                description="missing or wrong API token: send the header Authorization: Bearer <token>",
                challenges=["Bearer"],
            )
