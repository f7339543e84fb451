"""GET /metrics: the pipeline's counters, histograms and gauges in the
Prometheus text format (OpenMetrics to a scraper that asks for it); see
actors/metrics_export.py for what they are and where they come from."""

from __future__ import annotations

from typing import Callable

import falcon

#: `render(accept header)` -> (the exposition, its content type).
Render = Callable[[str | None], tuple[bytes, str]]


class MetricsResource:
    def __init__(self, render: Render):
        self.render = render

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = self.render(req.get_header("Accept"))
