"""GET / (what this API offers) and GET /health (is it able to work)."""

from __future__ import annotations

from typing import Protocol

import falcon

from storage import utc_now_iso

from ..version import API_NAME, VERSION


class HealthCheck(Protocol):
    def report(self) -> tuple[bool, dict]:
        """(healthy, what /health shows: mode, broker, storage, sandbox)."""


class RootResource:
    def __init__(self, endpoints: dict[str, str]):
        self.endpoints = endpoints  # read off the OpenAPI document (app/openapi.py)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "name": API_NAME,
            "version": VERSION,
            "status": "running",
            "timestamp": utc_now_iso(),
            "endpoints": self.endpoints,
        }


class HealthResource:
    """Healthy when the broker answers and the data folder is writable;
    503 otherwise, so a load balancer takes the instance out."""

    def __init__(self, check: HealthCheck):
        self.check = check

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        healthy, report = self.check.report()
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.media = {
            "status": "healthy" if healthy else "unhealthy",
            "timestamp": utc_now_iso(),
            "agent_manager": "initialized",
            **report,
        }
