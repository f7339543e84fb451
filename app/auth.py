"""Bearer-token auth: with `api_token` set (AIPYTHON_API_TOKEN), every
request needs `Authorization: Bearer <token>`, except the health check (load
balancers probe it without credentials), CORS preflights, and, while
`public_docs` is on (the default), the API description pages, which hold no
task data. The token is compared in constant time."""

from __future__ import annotations

import hmac

import falcon

HEALTH = "/health"
DOCS_PATHS = ("/openapi.json", "/docs")


class BearerAuth:
    def __init__(self, token: str, *, public_docs: bool = True):
        self.token = token.encode()
        self.public_docs = public_docs

    def _is_public(self, req: falcon.Request) -> bool:
        if req.method == "OPTIONS" or req.path == HEALTH:
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
