"""Counts every HTTP answer by method, route and status for `/metrics`.

The route is the matched route template (`/tasks/{task_id}`), never the
raw path, so task ids and file names do not become label values and the
number of series stays bounded. A request refused before routing (a 401 or
403 from the middleware before it) is looked up in the router, so it still
counts under its route; a path no route matches counts as `unmatched`, and a
method Falcon does not know as `other`.
"""

from __future__ import annotations

from typing import Callable

import falcon

UNMATCHED = "unmatched"
OTHER_METHOD = "other"

#: `find(path)`: the router's match for a path, None when nothing matches
#: (a Falcon router's `find`: its fourth item is the route template).
RouteFinder = Callable[[str], tuple | None]


class HttpRequestCounter:
    """Falcon middleware: `record(method, route, status)` for each answer.
    Falcon calls `process_response` of every middleware even when an earlier
    one refused the request, so put it anywhere in the list."""

    def __init__(self, record: Callable[[str, str, int], None], find_route: RouteFinder):
        self.record = record
        self.find_route = find_route

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        method = req.method if req.method in falcon.COMBINED_METHODS else OTHER_METHOD
        self.record(method, self._route(req), resp.status_code)

    def _route(self, req: falcon.Request) -> str:
        if req.uri_template is not None:
            return req.uri_template
        found = self.find_route(req.path)
        return found[3] if found else UNMATCHED
