"""POST /admin/cleanup?max_age_hours=24: remove finished tasks older than
that, now (the schedule does the same in the background)."""

from __future__ import annotations

import logging

import falcon

from ..models import MessageResponse, shape
from ..requests import float_param

log = logging.getLogger("aipy.admin")


class CleanupResource:
    def __init__(self, system):
        self.system = system

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        default = self.system.settings.max_age_hours
        hours = float_param(req, "max_age_hours", default, low=0, high=10**6)
        removed = self.system.cleanup_now(hours)
        resp.media = shape(MessageResponse, {"message": f"Cleaned up {removed} tasks"})
