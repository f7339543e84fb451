"""POST /admin/cleanup?max_age_hours=24: remove finished tasks older than
that, now (the schedule does the same in the background)."""

from __future__ import annotations

import falcon

from ..models import MessageResponse, shape
from ..requests import RequestLimits, float_param
from ..service import TaskService


class CleanupResource:
    def __init__(self, service: TaskService, limits: RequestLimits):
        self.service = service
        self.limits = limits

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        hours = float_param(req, "max_age_hours", self.limits.max_age_hours, low=0, high=10**6)
        removed = self.service.cleanup(hours)
        resp.media = shape(MessageResponse, {"message": f"Cleaned up {removed} tasks"})
