"""Files in: a task submitted with files (multipart/form-data or JSON base64)
finds them in its folder and is told about them, through the real pipeline
with the fake LLM; a bad upload is refused naming the file, with nothing
stored."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import stat
from pathlib import Path

import pytest
import requests

from agent.given_files import MAX_LISTED, with_files_note
from app.uploads import FORM_FIELDS, PATH_PATTERN, checked_path
from sdk import AgentClient, AsyncAgentClient

from .fake_llm import Block, Reply

CSV = b"city,temp\nOslo,4\nLima,19\n"


def form(task: dict | None = None, files: dict[str, bytes] | None = None, **fields: str) -> list:
    """`requests` parts: the `task` part (JSON), form fields, then one file part each."""
    parts: list = []
    if task is not None:
        parts.append(("task", (None, json.dumps(task), "application/json")))
    parts += [(name, (None, value)) for name, value in fields.items()]
    parts += [("file", (name, data, "application/octet-stream")) for name, data in (files or {}).items()]
    return parts


def post_form(server, parts: list, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}/tasks", files=parts, timeout=10, **kwargs)


def raw_form(*parts: tuple[str, bytes]) -> tuple[bytes, dict]:
    """A multipart body written out by hand ((Content-Disposition, content)
    per part), for names that clients would escape; with its headers."""
    body = b"".join(b"--B0undary\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + data + b"\r\n"
                    for disposition, data in parts) + b"--B0undary--\r\n"
    return body, {"Content-Type": "multipart/form-data; boundary=B0undary"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def first_message(fake_llm) -> str:
    return json.dumps(fake_llm.requests[0]["body"]["messages"], ensure_ascii=False)


def nothing_stored(server) -> bool:
    store = server.store
    folders = [path for path in store.tasks_dir.iterdir() if path.is_dir()]
    return store.list()[1] == 0 and not folders and not any(store.workspaces_dir.iterdir())


def refused(response: requests.Response, status: int, *words: str) -> bool:
    detail = response.json()["detail"]
    assert response.status_code == status, (response.status_code, detail)
    for word in words:
        assert word in detail, (word, detail)
    return True


# -- files that arrive -------------------------------------------------------------------

def test_a_multipart_task_part_and_file_reach_the_code_and_the_first_message(server, fake_llm):
    fake_llm.script(Reply("Reading.", blocks=[Block("python", "print(open('data.csv').read().count('\\n'))")]),
                    Reply("Three lines."))
    response = post_form(server, form({"instruction": "count the lines", "metadata": {"by": "test"}},
                                      {"data.csv": CSV}))
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    assert server.wait_for(task_id)["status"] == "completed"
    result = requests.get(f"{server.url}/tasks/{task_id}/result", timeout=10).json()
    assert result["output"]["results"][0]["result"]["stdout"].strip() == "3"
    assert result["output"]["metadata"]["by"] == "test"
    seen = first_message(fake_llm)
    assert "count the lines" in seen and f"data.csv ({len(CSV)} bytes)" in seen


def test_form_fields_instruction_and_metadata_work_as_n8n_sends_them(server, fake_llm):
    fake_llm.script(Reply("Done."))
    response = post_form(server, form(None, {"report.csv": CSV}, instruction="summarise report.csv",
                                      metadata='{"source": "n8n"}'))
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    server.wait_for(task_id)
    result = requests.get(f"{server.url}/tasks/{task_id}/result", timeout=10).json()
    assert result["instruction"] == "summarise report.csv" and result["output"]["metadata"]["source"] == "n8n"
    listed = requests.get(f"{server.url}/tasks/{task_id}/files", timeout=10).json()["files"]
    assert [(f["path"], f["size"]) for f in listed] == [("report.csv", len(CSV))]


def test_json_files_are_decoded_into_sub_folders_before_the_task_starts(start_server):
    server = start_server(workers=False)  # the task stays pending: its folder is as the submit left it
    files = [{"path": "in/data.csv", "content_base64": b64(CSV)}, {"path": "./notes.txt", "content_base64": ""},
             {"path": "in/deep/x.bin", "content_base64": b64(bytes(range(256)))}]
    response = requests.post(f"{server.url}/tasks", json={"instruction": "go", "files": files}, timeout=10)
    assert response.status_code == 200, response.text
    workspace = server.store.workspace(response.json()["task_id"])
    assert (workspace / "in/data.csv").read_bytes() == CSV and (workspace / "notes.txt").read_bytes() == b""
    assert (workspace / "in/deep/x.bin").read_bytes() == bytes(range(256))
    assert stat.S_IMODE(os.stat(workspace / "in/data.csv").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(workspace / "in/deep").st_mode) == 0o755


def test_the_code_reads_a_json_uploaded_file_in_a_sub_folder(server, fake_llm):
    fake_llm.script(Reply("Reading.", blocks=[Block("python", "print(open('in/data.csv').read().split()[1])")]),
                    Reply("Oslo."))
    task_id = server.submit("first city?", files=[{"path": "in/data.csv", "content_base64": b64(CSV)}])
    assert server.wait_for(task_id)["status"] == "completed"
    result = requests.get(f"{server.url}/tasks/{task_id}/result", timeout=10).json()
    assert result["output"]["results"][0]["result"]["stdout"].strip() == "Oslo,4"
    assert f"in/data.csv ({len(CSV)} bytes)" in first_message(fake_llm)


def test_a_multipart_upload_may_exceed_max_body_bytes_up_to_max_upload_bytes(start_server):
    server = start_server(workers=False, max_body_bytes=2048, max_upload_bytes=100_000)
    big = os.urandom(50_000)
    response = post_form(server, form({"instruction": "go"}, {"big.bin": big}))
    assert response.status_code == 200, response.text
    assert (server.store.workspace(response.json()["task_id"]) / "big.bin").read_bytes() == big


def test_the_limits_themselves_are_allowed(start_server):
    server = start_server(workers=False, max_upload_files=3, max_upload_bytes=30)
    response = post_form(server, form({"instruction": "go"}, {"a": b"x" * 10, "b": b"y" * 10, "c/d": b"z" * 10}))
    assert response.status_code == 200, response.text


# -- bad uploads: refused, naming the file; nothing stored -----------------------------------

@pytest.mark.parametrize("name, words", [
    ("/etc/passwd", ["'/etc/passwd'", "absolute"]),
    ("../up.txt", ["'../up.txt'", "'..'"]),
    ("in/../../x.txt", ["'in/../../x.txt'", "'..'"]),
    ("a\\b.txt", ["a\\\\b.txt", "'\\'"]),
    ("in/", ["'in/'", "end with '/'"]),
    ("a//b", ["'a//b'", "'//'"]),
    (".", ["'.'", "names no file"]),
    ("x" * 256, ["xxxxx", "255 bytes"]),
])
def test_a_bad_file_name_is_400(start_server, name, words):
    server = start_server(workers=False)
    response = post_form(server, form({"instruction": "go"}, {"ok.txt": b"1", name: b"2"}))
    assert refused(response, 400, *words) and nothing_stored(server)


@pytest.mark.parametrize("name", ["a\x01b.txt", "tab\there", "del\x7f", "c1\x85x"])
def test_a_control_character_in_a_name_is_400(start_server, name):
    server = start_server(workers=False)
    body, headers = raw_form(('form-data; name="task"', b'{"instruction": "go"}'),
                             (f'form-data; name="file"; filename="{name}"', b"data"))
    response = requests.post(f"{server.url}/tasks", data=body, headers=headers, timeout=10)
    assert refused(response, 400, repr(name), "control characters") and nothing_stored(server)


def test_a_control_character_in_a_json_path_is_400(start_server):
    server = start_server(workers=False)
    response = requests.post(f"{server.url}/tasks", json={"instruction": "go", "files": [
        {"path": "line\nbreak.txt", "content_base64": ""}]}, timeout=10)
    assert refused(response, 400, "'line\\nbreak.txt'", "control characters") and nothing_stored(server)


@pytest.mark.parametrize("first, second", [("a.txt", "a.txt"), ("a.txt", "./a.txt"), ("in/a", "in/./a")])
def test_a_file_given_twice_is_400(start_server, first, second):
    server = start_server(workers=False)
    parts = form({"instruction": "go"}) + [("file", (first, b"1")), ("file", (second, b"2"))]
    assert refused(post_form(server, parts), 400, repr(second), "twice") and nothing_stored(server)


def test_json_files_in_a_multipart_task_part_are_400(start_server):
    server = start_server(workers=False)
    task = {"instruction": "go", "files": [{"path": "a.txt", "content_base64": b64(b"1")}]}
    assert refused(post_form(server, form(task, {"b.txt": b"2"})), 400, "'task'", "as parts")
    assert nothing_stored(server)


@pytest.mark.parametrize("names", [("a", "a/b"), ("a/b/c", "a/b")])
def test_a_file_that_is_a_folder_of_another_is_400(start_server, names):
    server = start_server(workers=False)
    response = post_form(server, form({"instruction": "go"}, {name: b"1" for name in names}))
    assert refused(response, 400, "'a/b'" if names[1] == "a/b" else "'a'", "folder") and nothing_stored(server)


def test_an_empty_file_name_is_400(start_server):
    server = start_server(workers=False)
    body, headers = raw_form(('form-data; name="task"', b'{"instruction": "go"}'),
                             ('form-data; name="file"; filename=""', b"data"))
    response = requests.post(f"{server.url}/tasks", data=body, headers=headers, timeout=10)
    assert refused(response, 400, "empty name") and nothing_stored(server)
    response = requests.post(f"{server.url}/tasks", json={"instruction": "go", "files": [
        {"path": "", "content_base64": ""}]}, timeout=10)
    assert refused(response, 400, "files.0.path") and nothing_stored(server)


def test_too_many_files_is_413_naming_the_one_too_many(start_server):
    server = start_server(workers=False, max_upload_files=2)
    response = post_form(server, form({"instruction": "go"}, {"a": b"1", "b": b"2", "c": b"3"}))
    assert refused(response, 413, "'c'", "max_upload_files") and nothing_stored(server)
    response = requests.post(f"{server.url}/tasks", json={"instruction": "go", "files": [
        {"path": name, "content_base64": ""} for name in "xyz"]}, timeout=10)
    assert refused(response, 413, "'z'", "max_upload_files") and nothing_stored(server)


def test_files_over_max_upload_bytes_are_413_naming_the_file_that_crossed(start_server):
    server = start_server(workers=False, max_upload_bytes=30)
    response = post_form(server, form({"instruction": "go"}, {"a": b"x" * 20, "b": b"y" * 11}))
    assert refused(response, 413, "'b'", "max_upload_bytes") and nothing_stored(server)
    response = requests.post(f"{server.url}/tasks", json={"instruction": "go", "files": [
        {"path": "j", "content_base64": b64(b"z" * 31)}]}, timeout=10)
    assert refused(response, 413, "'j'", "max_upload_bytes") and nothing_stored(server)


def test_a_multipart_body_over_both_limits_is_413_before_it_is_read(start_server):
    server = start_server(workers=False, max_body_bytes=2048, max_upload_bytes=1000)
    response = post_form(server, form({"instruction": "go"}, {"big": b"x" * 4000}))
    assert response.status_code == 413 and nothing_stored(server)


@pytest.mark.parametrize("content", ["not base64!", "QUJD\n", "QQ", "QUJDRA=", "QUJD=="])
def test_content_that_is_not_base64_is_400(start_server, content):
    server = start_server(workers=False)
    response = requests.post(f"{server.url}/tasks", json={"instruction": "go", "files": [
        {"path": "data.bin", "content_base64": content}]}, timeout=10)
    assert refused(response, 400, "'data.bin'", "base64") and nothing_stored(server)


def test_a_task_part_that_is_not_json_is_400(start_server):
    server = start_server(workers=False)
    response = post_form(server, [("task", (None, "instruction=go"))] + form(None, {"a.txt": b"1"}))
    assert refused(response, 400, "'task'", "not valid JSON") and nothing_stored(server)
    response = post_form(server, [("task", (None, "[1, 2]"))])
    assert refused(response, 400, "'task'", "JSON object") and nothing_stored(server)


def test_a_form_without_an_instruction_is_400(start_server):
    server = start_server(workers=False)
    response = post_form(server, form({"metadata": {}}, {"a.txt": b"1"}))
    assert refused(response, 400, "instruction") and nothing_stored(server)
    response = post_form(server, form(None, {"a.txt": b"1"}, metadata="{}"))
    assert refused(response, 400, "instruction") and nothing_stored(server)
    response = post_form(server, form(None, {"a.txt": b"1"}))
    assert refused(response, 400, "no task") and nothing_stored(server)


@pytest.mark.parametrize("parts, words", [
    (form({"instruction": "go"}, instruction="again"), ["not both"]),
    (form(None, instruction="go", colour="blue"), ["'colour'", "unknown field"]),
    (form(None, instruction="go", metadata="{oops"), ["'metadata'", "not valid JSON"]),
    (form(None, instruction="go", max_rounds="many"), ["max_rounds"]),
    (form({"instruction": "go"}) + form({"instruction": "go"}), ["'task'", "twice"]),
])
def test_a_malformed_form_is_400(start_server, parts, words):
    server = start_server(workers=False)
    assert refused(post_form(server, parts), 400, *words) and nothing_stored(server)


def test_a_multipart_body_that_is_not_a_form_is_400(start_server):
    server = start_server(workers=False)
    for content_type in ("multipart/form-data; boundary=x", "multipart/form-data"):
        response = requests.post(f"{server.url}/tasks", data=b'{"instruction": "x"}',
                                 headers={"Content-Type": content_type}, timeout=10)
        assert response.status_code == 400 and nothing_stored(server)


def test_a_form_is_taken_only_by_post_tasks(server):
    response = requests.post(f"{server.url}/admin/cleanup", files=form({"instruction": "go"}), timeout=10)
    assert refused(response, 415, "Content-Type: application/json")


def test_a_form_from_a_foreign_page_is_403(start_server):
    server = start_server(workers=False)
    response = post_form(server, form({"instruction": "go"}, {"a.txt": b"1"}),
                         headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and nothing_stored(server)


def test_form_fields_may_set_the_other_options(start_server):
    server = start_server(workers=False)
    response = post_form(server, form(None, {"a.txt": b"1"}, instruction="go", max_rounds="2", llm="fake"))
    assert response.status_code == 200, response.text
    assert server.store.get(response.json()["task_id"])["options"]["max_rounds"] == 2


# -- follow-ups ----------------------------------------------------------------------------

def test_a_follow_ups_upload_replaces_the_copied_file_of_that_name(server, fake_llm):
    fake_llm.script(Reply("Saving.", blocks=[Block("python", "import os; os.makedirs('out'); "
                                                            "open('data.csv', 'w').write('old')")]), Reply("Done."))
    first = server.submit("write")
    assert server.wait_for(first)["status"] == "completed"
    fake_llm.script(Reply("Reading.", blocks=[Block("python", "print(open('data.csv').read())")]), Reply("New."))
    response = post_form(server, form({"instruction": "read", "previous_task_id": first}, {"data.csv": b"new"}))
    assert response.status_code == 200, response.text
    second = response.json()["task_id"]
    assert server.wait_for(second)["status"] == "completed"
    result = requests.get(f"{server.url}/tasks/{second}/result", timeout=10).json()
    assert result["output"]["results"][0]["result"]["stdout"].strip() == "new"

    # A folder of the earlier task where an upload wants a file: refused, and the new task goes again.
    response = post_form(server, form({"instruction": "read", "previous_task_id": first}, {"out": b"x"}))
    assert response.status_code == 400 and "'out'" in response.json()["detail"]
    assert server.store.list()[1] == 2


# -- the SDK -------------------------------------------------------------------------------

def test_the_sdk_sends_bytes_file_objects_and_paths(server, fake_llm, tmp_path):
    fake_llm.script(Reply("Done."))
    (tmp_path / "local.csv").write_bytes(CSV)
    with open(tmp_path / "local.csv", "rb") as opened, AgentClient(server.url) as client:
        task = client.submit_task("look", files={"a.csv": opened, "in/b.txt": b"bee", "c.csv": tmp_path / "local.csv",
                                                 "d.csv": str(tmp_path / "local.csv")})
        client.wait_for_completion(task.task_id, timeout=15)
        listed = {f.path: f.size for f in client.list_files(task.task_id)}
    assert listed == {"a.csv": len(CSV), "in/b.txt": 3, "c.csv": len(CSV), "d.csv": len(CSV)}


def test_the_async_sdk_runs_a_task_with_a_file(server, fake_llm):
    fake_llm.script(Reply("Reading.", blocks=[Block("python", "print(open('data.csv').read().count('\\n'))")]),
                    Reply("Three lines."))

    async def run():
        async with AsyncAgentClient(server.url) as client:
            return await client.run_task("count", files={"data.csv": CSV}, timeout=15)

    result = asyncio.run(run())
    assert result.status == "completed" and result.output.results[0].result["stdout"].strip() == "3"


def test_the_sdk_reports_a_refused_upload_with_the_servers_detail(server):
    from sdk import BadRequest

    with AgentClient(server.url) as client, pytest.raises(BadRequest, match="'..'"):
        client.submit_task("x", files={"../x": b"1"})


# -- the name rules and the OpenAPI document say the same -----------------------------------

@pytest.mark.parametrize("name", ["a", "a.txt", "in/a.txt", "./a", "a/./b", "...", "a..b", ".hidden", "é/ü.csv",
                                  "/a", "a/", "a//b", "..", "a/..", "../a", ".", "./.", "a\\b", "a\x00", "a\x9f",
                                  "", "x" * 255, "x" * 256, "/".join("a" * 32), "/".join("a" * 33)])
def test_the_openapi_pattern_matches_exactly_the_names_taken(name):
    try:
        checked_path(name)
        taken = True
    except Exception:
        taken = False
    assert taken == bool(re.fullmatch(PATH_PATTERN, name)), name


# -- what the model is told ------------------------------------------------------------------

def test_the_files_note_names_each_file_in_either_language():
    files = [{"path": "in/data.csv", "size": 1234}]
    assert with_files_note("go", files).endswith("- in/data.csv (1,234 bytes)")
    assert with_files_note("go", files, "zh").endswith("- in/data.csv（1,234 字节）")
    assert with_files_note("go", []) == "go"
    many = [{"path": f"f{n}", "size": n} for n in range(MAX_LISTED + 5)]
    assert with_files_note("go", many).endswith("- … and 5 more")


# -- the n8n example -------------------------------------------------------------------------

def test_the_n8n_file_workflow_sends_a_form_the_server_takes():
    workflow = json.loads((Path(__file__).parent.parent / "examples/n8n/submit-with-a-file.json").read_text())
    nodes = {node["name"]: node for node in workflow["nodes"]}
    submit = nodes["Submit task with the file"]["parameters"]
    assert submit["method"] == "POST" and submit["url"].endswith("/tasks")
    assert submit["contentType"] == "multipart-form-data"
    params = submit["bodyParameters"]["parameters"]
    fields = {p["name"] for p in params if p.get("parameterType", "formData") == "formData"}
    assert "instruction" in fields and fields <= FORM_FIELDS
    [binary] = [p for p in params if p.get("parameterType") == "formBinaryData"]
    assert nodes["Make data.csv"]["parameters"]["binaryPropertyName"] == binary["inputDataFieldName"]
    targets = {link["node"] for outputs in workflow["connections"].values() for out in outputs["main"] for link in out}
    assert targets | set(workflow["connections"]) <= set(nodes)
