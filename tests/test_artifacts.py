"""Only the workspace's own regular files are listed and served
(app/artifacts.py), whatever task code left there: links out, hard links,
FIFOs, link loops and odd names never leak a file and never give a 500."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from app.artifacts import ArtifactNotFound, open_artifact, resolve_inside

from .fake_llm import Reply


@pytest.fixture
def task(server, fake_llm) -> tuple[str, Path]:
    """A finished task and its workspace, which the test fills itself."""
    fake_llm.script(Reply("Done."))
    task_id = server.submit("leave files")
    server.wait_for(task_id)
    return task_id, server.store.workspace(task_id)


def listed(server, task_id: str) -> list[str]:
    response = requests.get(f"{server.url}/tasks/{task_id}/files")
    assert response.status_code == 200
    return [entry["path"] for entry in response.json()["files"]]


def download(server, task_id: str, path: str) -> requests.Response:
    return requests.get(f"{server.url}/tasks/{task_id}/files/{quote(path)}", timeout=5)


def test_a_link_to_a_file_outside_is_neither_listed_nor_served(server, task, tmp_path):
    task_id, workspace = task
    (tmp_path / "secret.txt").write_text("outside")
    (workspace / "passwd").symlink_to("/etc/passwd")
    (workspace / "secret").symlink_to(tmp_path / "secret.txt")
    assert listed(server, task_id) == []
    for name in ("passwd", "secret"):
        response = download(server, task_id, name)
        assert response.status_code == 404 and "has no file" in response.json()["detail"]
        assert "root:" not in response.text and "outside" not in response.text


def test_a_link_inside_the_workspace_is_followed(server, task):
    task_id, workspace = task
    (workspace / "runs").mkdir()
    (workspace / "runs" / "3.csv").write_text("a,b\n")
    (workspace / "latest.csv").symlink_to("runs/3.csv")
    (workspace / "all").symlink_to("runs")
    assert listed(server, task_id) == ["runs/3.csv"]  # links themselves are not listed
    for path in ("latest.csv", "all/3.csv"):
        response = download(server, task_id, path)
        assert response.status_code == 200 and response.text == "a,b\n"
        assert response.headers["Content-Disposition"] == 'attachment; filename="3.csv"'


def test_a_hard_link_to_a_file_outside_is_refused(server, task, tmp_path):
    task_id, workspace = task
    outside = tmp_path / "outside.txt"
    outside.write_text("not the task's")
    os.link(outside, workspace / "copy.txt")
    assert listed(server, task_id) == []
    response = download(server, task_id, "copy.txt")
    assert response.status_code == 404 and "other links" in response.json()["detail"]
    assert "not the task's" not in response.text


def test_a_fifo_is_refused_without_hanging(server, task):
    task_id, workspace = task
    os.mkfifo(workspace / "pipe")
    assert listed(server, task_id) == []
    response = download(server, task_id, "pipe")  # opening a FIFO to read would wait for a writer
    assert response.status_code == 404 and "not a regular file" in response.json()["detail"]


def test_a_folder_is_not_a_file(server, task):
    task_id, workspace = task
    (workspace / "out").mkdir()
    assert download(server, task_id, "out").status_code == 404


def test_a_link_loop_is_404(server, task):
    task_id, workspace = task
    (workspace / "loop").symlink_to("loop")
    (workspace / "ping").symlink_to("pong")
    (workspace / "pong").symlink_to("ping")
    assert listed(server, task_id) == []
    for path in ("loop", "ping", "loop/x"):
        assert download(server, task_id, path).status_code == 404, path


def test_a_name_with_cr_lf_is_served_with_a_safe_header(server, task):
    task_id, workspace = task
    (workspace / "a\r\nSet-Cookie: x=1.txt").write_text("crlf")
    assert listed(server, task_id) == ["a\r\nSet-Cookie: x=1.txt"]
    response = download(server, task_id, "a\r\nSet-Cookie: x=1.txt")
    assert response.status_code == 200 and response.text == "crlf"
    assert response.headers["Content-Disposition"] == 'attachment; filename="a__Set-Cookie: x=1.txt"'
    assert "Set-Cookie" not in response.headers


def test_quotes_in_a_name_cannot_break_the_header(server, task):
    task_id, workspace = task
    (workspace / 'say "hi"\\.txt').write_text("q")
    response = download(server, task_id, 'say "hi"\\.txt')
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="say _hi__.txt"'


def test_a_non_ascii_name_is_offered_in_utf_8(server, task):
    task_id, workspace = task
    (workspace / "résumé.txt").write_text("cv")
    assert listed(server, task_id) == ["résumé.txt"]
    response = download(server, task_id, "résumé.txt")
    assert response.status_code == 200 and response.text == "cv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.isascii() and disposition.endswith("; filename*=UTF-8''r%C3%A9sum%C3%A9.txt")


def test_a_name_that_is_not_utf_8_is_left_out_and_never_a_500(server, task):
    task_id, workspace = task
    fd = os.open(os.fsencode(workspace) + b"/caf\xe9.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    os.mkdir(os.fsencode(workspace) + b"/d\xff")
    open(os.fsencode(workspace) + b"/d\xff/inner.txt", "w").close()
    (workspace / "ok.txt").write_text("fine")
    assert listed(server, task_id) == ["ok.txt"]
    for path in ("caf%E9.txt", "caf%C3%A9.txt", "d%FF/inner.txt"):
        response = requests.get(f"{server.url}/tasks/{task_id}/files/{path}", timeout=5)
        assert response.status_code == 404, path
    assert requests.get(f"{server.url}/tasks/{task_id}/files/ok.txt").text == "fine"


def test_a_folder_swapped_for_a_link_after_the_check_fails_the_open(tmp_path):
    # resolve_inside checks the path; the open walks the same path again with
    # O_NOFOLLOW, so a link swapped in between leads nowhere.
    workspace, outside = tmp_path / "workspace", tmp_path / "outside"
    (workspace / "sub").mkdir(parents=True)
    (workspace / "sub" / "f.txt").write_text("inside")
    outside.mkdir()
    (outside / "f.txt").write_text("outside")
    parts = resolve_inside(workspace, "sub/f.txt")
    assert parts == ("sub", "f.txt")

    (workspace / "sub").rename(tmp_path / "moved")
    (workspace / "sub").symlink_to(outside)
    from app import artifacts

    with pytest.raises(ArtifactNotFound):
        artifacts._open_beneath(os.path.realpath(workspace), parts)
    with pytest.raises(ArtifactNotFound):  # and the whole open sees the link for what it is
        open_artifact(workspace, "sub/f.txt")


def test_a_page_the_code_wrote_is_served_as_an_attachment_that_cannot_run_script(server, task):
    # The dashboard keeps its token in this origin's session storage: a
    # model-written page must never run as a page of this origin.
    task_id, workspace = task
    (workspace / "report.html").write_text("<script>fetch('/tasks')</script>")
    response = download(server, task_id, "report.html")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Content-Disposition"] == 'attachment; filename="report.html"'
    assert response.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
