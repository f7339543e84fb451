"""GET / (what this API offers) and GET /health (is it able to work)."""

from __future__ import annotations

import falcon

from storage import StorageError, utc_now_iso

from ..version import API_NAME, VERSION

ENDPOINTS = {
    "submit_task": "POST /tasks",
    "get_task_status": "GET /tasks/{task_id}",
    "get_task_result": "GET /tasks/{task_id}/result",
    "list_tasks": "GET /tasks",
    "cancel_task": "DELETE /tasks/{task_id}",
    "health": "GET /health",
    "cleanup": "POST /admin/cleanup",
    "stream_events": "GET /tasks/{task_id}/events",
    "list_files": "GET /tasks/{task_id}/files",
    "download_file": "GET /tasks/{task_id}/files/{path}",
    "openapi": "GET /openapi.json",
    "docs": "GET /docs",
}


class RootResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "name": API_NAME,
            "version": VERSION,
            "status": "running",
            "timestamp": utc_now_iso(),
            "endpoints": ENDPOINTS,
        }


class HealthResource:
    """Healthy when the broker answers and the data folder is writable;
    503 otherwise, so a load balancer takes the instance out."""

    def __init__(self, system):
        self.system = system

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        broker_error = self.system.broker_error()
        try:
            self.system.store.check()
            storage_error = None
        except StorageError as exc:
            storage_error = str(exc)
        healthy = broker_error is None and storage_error is None
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.media = {
            "status": "healthy" if healthy else "unhealthy",
            "timestamp": utc_now_iso(),
            "agent_manager": "initialized",
            "mode": self.system.mode,
            "broker": broker_error or "ok",
            "storage": storage_error or "ok",
            "sandbox": self.system.sandbox_status(),
        }
