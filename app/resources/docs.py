"""GET /openapi.json: the API's OpenAPI 3.1 document. GET /docs: Swagger UI
for it, served from the assets that ship in the swagger-ui-py package, so the
page works on a machine with no internet access."""

from __future__ import annotations

import falcon


class OpenAPIResource:
    def __init__(self, document: dict):
        self.document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document


def add_docs(app: falcon.App, document: dict, title: str) -> None:
    """Serve the document at /openapi.json and the page at /docs."""
    from swagger_ui import api_doc

    resource = OpenAPIResource(document)
    app.add_route("/openapi.json", resource)
    # The page's own browser fetches the document from under its prefix
    # (config_url would make the server fetch it from itself over HTTP).
    app.add_route("/docs/openapi.json", resource)
    api_doc(app, config_rel_url="/openapi.json", url_prefix="/docs", title=title, editor=False)
