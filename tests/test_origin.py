"""Requests a web page made are refused (app/origin.py): bodies that are not
JSON, foreign origins, and, with no API token, foreign Host names (DNS
rebinding). Every connection goes to 127.0.0.1; other names travel only in
the Host and Origin headers, as a browser would send them."""

from __future__ import annotations

import pytest
import requests

from .fake_llm import Reply


def tasks_stored(server) -> int:
    return server.store.list()[1]


def submit_from(server, origin: str) -> requests.Response:
    return requests.post(f"{server.url}/tasks", json={"instruction": "x"}, headers={"Origin": origin})


# -- bodies that are not JSON: 415 ---------------------------------------------------

# multipart/form-data is POST /tasks's other body (files: tests/test_uploads.py).
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_post_whose_body_is_not_json_is_415(start_server, content_type):
    server = start_server(workers=False)
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.post(f"{server.url}/tasks", data=b'{"instruction": "x"}', headers=headers)
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["detail"]
    assert tasks_stored(server) == 0


def test_a_cleanup_with_a_form_body_is_415_and_removes_nothing(server, fake_llm):
    fake_llm.script(Reply("Done."))
    task_id = server.submit("finish")
    server.wait_for(task_id)
    response = requests.post(f"{server.url}/admin/cleanup?max_age_hours=0", data={"a": "b"})
    assert response.status_code == 415 and "no body at all" in response.json()["detail"]
    assert requests.get(f"{server.url}/tasks/{task_id}").status_code == 200


def test_a_delete_with_a_text_body_is_415_and_cancels_nothing(start_server):
    server = start_server(workers=False)
    task_id = server.submit("wait")
    response = requests.delete(f"{server.url}/tasks/{task_id}", data="please", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert requests.get(f"{server.url}/tasks/{task_id}").json()["status"] == "pending"


def test_a_chunked_body_that_is_not_json_is_415(start_server):
    server = start_server(workers=False)
    chunks = iter([b'{"instruction": ', b'"x"}'])  # a generator body goes out chunked
    response = requests.post(f"{server.url}/tasks", data=chunks, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and tasks_stored(server) == 0


def test_a_chunked_json_body_is_accepted(start_server):
    server = start_server(workers=False)
    chunks = iter([b'{"instruction": ', b'"x"}'])
    response = requests.post(f"{server.url}/tasks", data=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and tasks_stored(server) == 1


def test_a_json_suffix_type_is_json(start_server):
    server = start_server(workers=False)
    response = requests.post(f"{server.url}/tasks", data=b'{"instruction": "x"}',
                             headers={"Content-Type": "application/vnd.api+json; charset=utf-8"})
    assert response.status_code == 200


def test_a_post_with_no_body_is_still_allowed(server):
    response = requests.post(f"{server.url}/admin/cleanup?max_age_hours=1")
    assert response.status_code == 200 and response.json() == {"message": "Cleaned up 0 tasks"}


# -- foreign origins: 403 --------------------------------------------------------------

@pytest.mark.parametrize("method, path", [("POST", "/tasks"), ("POST", "/admin/cleanup"), ("DELETE", "/tasks/{id}")])
def test_a_state_change_from_a_foreign_origin_is_403(start_server, method, path):
    server = start_server(workers=False)
    task_id = server.submit("keep me")
    body = {"json": {"instruction": "x"}} if path == "/tasks" else {}
    response = requests.request(method, f"{server.url}{path.format(id=task_id)}",
                                headers={"Origin": "https://evil.example"}, **body)
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "https://evil.example" in detail and "AIPYTHON_CORS_ORIGINS" in detail
    assert tasks_stored(server) == 1
    assert requests.get(f"{server.url}/tasks/{task_id}").json()["status"] == "pending"


@pytest.mark.parametrize("origin", ["null", "http://127.0.0.1", "http://127.0.0.1:1", "http://localhost:{port}",
                                    "http://rebound.example:{port}", "file://"])
def test_an_origin_other_than_the_servers_own_is_foreign(server, origin):
    port = server.url.rsplit(":", 1)[1]
    assert submit_from(server, origin.format(port=port)).status_code == 403


def test_a_same_origin_request_is_allowed(server):
    # What the /docs page ("Try it out") sends from the server's own origin.
    assert submit_from(server, server.url).status_code == 200
    port = server.url.rsplit(":", 1)[1]
    response = requests.post(f"{server.url}/tasks", json={"instruction": "x"},
                             headers={"Host": f"LOCALHOST:{port}", "Origin": f"http://localhost:{port}"})
    assert response.status_code == 200


def test_behind_a_tls_proxy_the_https_origin_of_the_host_is_the_servers_own(start_server):
    # The proxy passes Host on; the server itself sees plain http.
    server = start_server(workers=False, allowed_hosts=["api.example"])
    response = requests.post(f"{server.url}/tasks", json={"instruction": "x"},
                             headers={"Host": "api.example", "Origin": "https://api.example"})
    assert response.status_code == 200
    response = requests.post(f"{server.url}/tasks", json={"instruction": "x"},
                             headers={"Host": "api.example", "Origin": "https://api.example:8443"})
    assert response.status_code == 403


def test_origins_in_cors_origins_are_allowed(start_server):
    server = start_server(workers=False, cors_origins=["https://app.example:443"])
    assert submit_from(server, "https://app.example").status_code == 200
    assert submit_from(server, "https://other.example").status_code == 403


def test_cors_origins_star_allows_any_origin(start_server):
    server = start_server(workers=False, cors_origins=["*"])
    assert submit_from(server, "https://any.example").status_code == 200


def test_cross_site_fetch_metadata_without_an_origin_is_403(server):
    response = requests.post(f"{server.url}/admin/cleanup", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403 and "cross-site" in response.json()["detail"]
    response = requests.post(f"{server.url}/admin/cleanup", headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 200


def test_reads_from_a_foreign_origin_are_left_to_cors(server):
    response = requests.get(f"{server.url}/tasks", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers


# -- foreign Host names with no token: 403 (DNS rebinding) ---------------------------

def test_a_foreign_host_is_refused_when_no_token_is_set(server):
    port = server.url.rsplit(":", 1)[1]
    for method, path in [("GET", "/tasks"), ("GET", "/"), ("GET", "/openapi.json"), ("POST", "/admin/cleanup")]:
        response = requests.request(method, f"{server.url}{path}", headers={"Host": f"rebound.example:{port}"})
        assert response.status_code == 403, (method, path)
        detail = response.json()["detail"]
        assert "rebound.example" in detail and "AIPYTHON_ALLOWED_HOSTS" in detail and "AIPYTHON_API_TOKEN" in detail


def test_a_rebinding_page_cannot_submit_as_its_own_origin(server):
    port = server.url.rsplit(":", 1)[1]
    page = f"http://rebound.example:{port}"
    response = requests.post(f"{server.url}/tasks", json={"instruction": "x"},
                             headers={"Host": f"rebound.example:{port}", "Origin": page})
    assert response.status_code == 403 and server.store.list()[1] == 0


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "127.0.0.1", "127.0.0.1:{port}", "127.3.2.1:80",
                                  "[::1]", "[::1]:{port}", "localhost."])
def test_loopback_hosts_are_served(server, host):
    port = server.url.rsplit(":", 1)[1]
    response = requests.get(f"{server.url}/tasks", headers={"Host": host.format(port=port)})
    assert response.status_code == 200


def test_health_answers_under_any_host(server):
    response = requests.get(f"{server.url}/health", headers={"Host": "lb-probe.internal"})
    assert response.status_code == 200 and response.json()["status"] == "healthy"


def test_allowed_hosts_are_served(start_server):
    server = start_server(workers=False, allowed_hosts=["API.example", "*.corp.example"])
    for host in ["api.example", "api.example:8848", "tasks.corp.example"]:
        assert requests.get(f"{server.url}/tasks", headers={"Host": host}).status_code == 200, host
    for host in ["corp.example", "api.example.evil", "evil.example"]:
        assert requests.get(f"{server.url}/tasks", headers={"Host": host}).status_code == 403, host


def test_allowed_hosts_star_serves_any_host(start_server):
    server = start_server(workers=False, allowed_hosts=["*"])
    assert requests.get(f"{server.url}/tasks", headers={"Host": "anything.example"}).status_code == 200


def test_allowed_hosts_reads_a_comma_separated_variable(monkeypatch):
    from config.settings import Settings

    monkeypatch.setenv("AIPYTHON_ALLOWED_HOSTS", "api.example, *.corp.example")
    assert Settings().allowed_hosts == ["api.example", "*.corp.example"]


def test_with_a_token_the_host_is_not_checked(start_server):
    server = start_server(workers=False, api_token="s3cret")
    response = requests.get(f"{server.url}/tasks", headers={"Host": "api.example", "Authorization": "Bearer s3cret"})
    assert response.status_code == 200
