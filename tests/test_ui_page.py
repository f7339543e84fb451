"""The dashboard's files (/ui) as the server sends them: security headers,
caching, no token needed, nothing outside the shipped folder. The page in a
real browser is tests/test_ui_browser.py."""

from __future__ import annotations

import re
from importlib import resources

import httpx
import pytest

from app.resources.ui import load_assets

UI_FOLDER = resources.files("app") / "ui"


def test_every_shipped_file_is_served_and_of_a_known_type():
    shipped = {entry.name for entry in UI_FOLDER.iterdir() if entry.is_file()}
    assert "index.html" in shipped and "main.js" in shipped
    assert set(load_assets()) == shipped, "a file in app/ui of a type the resource does not serve"


def test_the_page_and_its_files_carry_a_strict_policy(server):
    page = httpx.get(f"{server.url}/ui", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = dict(part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert "unsafe" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    script = httpx.get(f"{server.url}/ui/main.js", timeout=10)
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert script.headers["Content-Security-Policy"] == page.headers["Content-Security-Policy"]


def test_the_page_has_no_inline_script_or_style():
    """The policy forbids them, so the page would break: scripts and styles
    come from files only."""
    page = (UI_FOLDER / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert "<style" not in page and " style=" not in page and not re.search(r"\son[a-z]+=", page)


@pytest.mark.parametrize("name", [entry.name for entry in UI_FOLDER.iterdir() if entry.name.endswith(".js")])
def test_no_script_turns_text_into_markup(name):
    """Task content is the model's: the page builds it with text nodes
    (app/ui/dom.js), never by parsing a string as HTML."""
    script = (UI_FOLDER / name).read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "createContextualFragment", "DOMParser"):
        assert sink not in script, f"{name} uses {sink}"


def test_an_unchanged_file_is_not_sent_again(server):
    first = httpx.get(f"{server.url}/ui/style.css", timeout=10)
    again = httpx.get(f"{server.url}/ui/style.css", headers={"If-None-Match": first.headers["ETag"]}, timeout=10)
    assert again.status_code == 304 and not again.content
    assert first.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("path", ["/ui/missing.js", "/ui/..%2Fauth.py", "/ui/ui.py", "/ui/index.html/x"])
def test_only_the_shipped_files_are_served(server, path):
    response = httpx.get(f"{server.url}{path}", timeout=10)
    assert response.status_code == 404 and "detail" in response.json()


def test_with_a_token_the_page_needs_none_but_the_api_does(start_server):
    server = start_server(api_token="s3cret", workers=False)
    assert httpx.get(f"{server.url}/ui", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/ui/api.js", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/tasks", timeout=10).status_code == 401


def test_the_dashboard_is_not_part_of_the_api_document(server):
    document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert not [path for path in document["paths"] if path.startswith("/ui")]
