"""Files handed in with a task (POST /tasks), read and checked before
anything is stored.

Two ways to send them:
- multipart/form-data (curl -F, n8n's form-data body, /docs): the part named
  `task` holds the usual JSON body, whatever its content type; or form fields
  named after the body's fields hold it field by field (`instruction`,
  `llm`…; `metadata`, `max_rounds` and `timeout_s` as JSON text; one way or
  the other, not both). Every other part with a file name is a file, saved under that name
  whatever the part is called. Falcon's own parser (falcon.media.multipart)
  splits the parts as they are read.
- JSON: `files: [{"path", "content_base64"}]` beside the other fields (only
  there: a multipart submit's task part may not hold them).

Names (`checked_path`, and `PATH_PATTERN` says the same for the OpenAPI
document): relative, `/` between folders, no empty name, `..`, backslash
or control character; `.` parts are dropped (`./a.txt` is `a.txt`); at most
255 bytes a name, 32 names and 1024 bytes a path. No two files may have one
path, and no file may be a folder of another (`a` and `a/b`). Sizes: at most
`max_upload_files` files of `max_upload_bytes` in all (413 beyond). Every
refusal names the file, and nothing is stored.
"""

from __future__ import annotations

import base64
import re
import unicodedata

import falcon
from falcon.media.multipart import MultipartFormHandler, MultipartParseError

from .models import FileUpload, TaskSubmission
from .requests import RequestLimits, parse_json, validated
from .service import Upload

#: The part of a multipart submit that holds the JSON body.
TASK_PART = "task"
#: What a multipart submit may send as form fields (files come as parts),
#: and those whose text is read as JSON (`metadata`, the numbers).
FORM_FIELDS = frozenset(TaskSubmission.model_fields) - {"files"}
JSON_FIELDS = frozenset(
    name for name, schema in TaskSubmission.model_json_schema()["properties"].items()
    if name in FORM_FIELDS and not any(branch.get("type") == "string" for branch in [schema, *schema.get("anyOf", [])]))

#: No `task` part (yet); a part may hold JSON null, which is no task either.
_NO_TASK = object()

MAX_NAME_BYTES = 255  # one file or folder name: the file system's NAME_MAX
MAX_PATH_PARTS = 32
MAX_PATH_BYTES = 1024

_NAME = r"[^/\\\x00-\x1f\x7f-\x9f]{1,255}"
#: The names `checked_path` takes (but for its byte limits), as a regex.
PATH_PATTERN = (r"^(?!(?:.*/)?\.\.(?:/|$))(?!(?:\./)*\.$)"
                rf"(?:{_NAME}/){{0,{MAX_PATH_PARTS - 1}}}{_NAME}$")
#: Base64 as `decode_base64` takes it: standard alphabet, padded, no line breaks.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_BASE64 = re.compile(BASE64_PATTERN)


def checked_path(name: str) -> str:
    """Where in the workspace the file `name` goes (`.` parts dropped);
    400 naming it when it cannot be a file's path there."""
    def refuse(why: str):
        raise falcon.HTTPBadRequest(description=f"file {name!r}: {why}")

    if not name:
        raise falcon.HTTPBadRequest(description="a file has an empty name; give each file a path such as 'data.csv'")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in name):
        refuse("control characters are not allowed in a file name")
    if "\\" in name:
        refuse("'\\' is not allowed in a file name; separate folders with '/'")
    if name.startswith("/"):
        refuse("absolute paths are not allowed; give a path inside the task's folder, e.g. 'data.csv' or 'in/data.csv'")
    parts = name.split("/")
    if ".." in parts:
        refuse("'..' is not allowed in a path")
    if "" in parts:
        refuse("a path may not end with '/' or hold '//'")
    if len(parts) > MAX_PATH_PARTS or len(name.encode()) > MAX_PATH_BYTES:
        refuse(f"a path may have at most {MAX_PATH_PARTS} names and {MAX_PATH_BYTES} bytes")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in parts):
        refuse(f"a file or folder name may have at most {MAX_NAME_BYTES} bytes")
    kept = [part for part in parts if part != "."]
    if not kept:
        refuse("names no file")
    return "/".join(kept)


class UploadBatch:
    """The files of one submit, checked as they come in: name, count and
    total size; `done` checks them against each other."""

    def __init__(self, max_files: int, max_bytes: int):
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.uploads: list[Upload] = []
        self.given: dict[str, str] = {}  # path -> the name it was given as
        self.total = 0

    @property
    def room(self) -> int:
        """Bytes the files still may take."""
        return self.max_bytes - self.total

    def admit(self, name: str) -> str:
        """The path of the next file, given as `name`: 400 for a bad name or
        one given before, 413 past max_upload_files."""
        path = checked_path(name)
        if len(self.given) >= self.max_files:
            raise falcon.HTTPContentTooLarge(
                description=f"file {name!r}: more than {self.max_files} files (max_upload_files); nothing was stored")
        if path in self.given:
            first = self.given[path]
            also = "" if first == name else f" (as {first!r})"
            raise falcon.HTTPBadRequest(description=f"file {name!r} is given twice{also}; give each file once")
        self.given[path] = name
        return path

    def add(self, path: str, data: bytes) -> None:
        """Keep the admitted file `path`; 413 when it takes the files past max_upload_bytes."""
        if len(data) > self.room:
            raise falcon.HTTPContentTooLarge(
                description=f"file {self.given[path]!r}: the files come to more than {self.max_bytes} bytes "
                            "(max_upload_bytes); nothing was stored")
        self.total += len(data)
        self.uploads.append(Upload(path, data))

    def done(self) -> list[Upload]:
        """The files; 400 when one of them is a folder of another."""
        folders: dict[str, str] = {}
        for upload in self.uploads:
            parts = upload.path.split("/")
            for depth in range(1, len(parts)):
                folders.setdefault("/".join(parts[:depth]), upload.path)
        for upload in self.uploads:
            if upload.path in folders:
                raise falcon.HTTPBadRequest(description=(
                    f"file {self.given[upload.path]!r} is also a folder of {self.given[folders[upload.path]]!r}; "
                    "a name can be a file or a folder, not both"))
        return list(self.uploads)


def decode_files(entries: list[FileUpload] | None, batch: UploadBatch) -> None:
    """Add a JSON submit's `files` to `batch`."""
    for entry in entries or ():
        path = batch.admit(entry.path)
        batch.add(path, decode_base64(entry.content_base64, entry.path))


def decode_base64(text: str, name: str) -> bytes:
    if not _BASE64.fullmatch(text):
        raise falcon.HTTPBadRequest(description=(
            f"file {name!r}: content_base64 is not valid base64 (standard alphabet A-Z a-z 0-9 + /, "
            "padded with '=', no line breaks)"))
    return base64.b64decode(text)


def json_uploads(body: TaskSubmission, limits: RequestLimits) -> list[Upload]:
    """The files of a JSON submit, decoded and checked."""
    batch = UploadBatch(limits.max_upload_files, limits.max_upload_bytes)
    decode_files(body.files, batch)
    return batch.done()


def read_multipart(req: falcon.Request, limits: RequestLimits) -> tuple[TaskSubmission, list[Upload]]:
    """The task and the files of a multipart/form-data submit. The body may
    hold max_upload_bytes of files plus max_body_bytes for the rest (413
    past it); 400 for a form that is malformed or says no task."""
    length = req.content_length
    if length is None:
        raise falcon.HTTPBadRequest(description="a multipart/form-data body needs a Content-Length header")
    ceiling = limits.max_body_bytes + limits.max_upload_bytes
    if length > ceiling:
        raise falcon.HTTPContentTooLarge(description=(
            f"request body is {length} bytes; a multipart submit may have {ceiling} "
            "(max_upload_bytes for the files plus max_body_bytes for the rest)"))
    handler = MultipartFormHandler()
    # A backstop only: the count below refuses one file too many by name.
    handler.parse_options.max_body_part_count = limits.max_upload_files + len(FORM_FIELDS) + 1
    form = handler.deserialize(req.bounded_stream, req.content_type, length)
    batch = UploadBatch(limits.max_upload_files, limits.max_upload_bytes)
    fields = _FormFields(limits.max_body_bytes)
    try:
        for part in form:
            name, filename = _disposition(part)
            if name == TASK_PART:
                fields.read_task(part)
            elif filename is not None:
                path = batch.admit(filename)
                batch.add(path, part.stream.read(batch.room + 1))
            else:
                fields.read_field(name, part)
    except (MultipartParseError, falcon.DelimiterError) as exc:
        detail = getattr(exc, "description", None) or "unexpected end of the form"
        raise falcon.HTTPBadRequest(description=f"invalid multipart/form-data body: {detail}") from None
    # Strict: its values are JSON's own (numbers, not `true`), as the document says.
    body = validated(fields.body(), TaskSubmission, f"the part {TASK_PART!r}", strict=True)
    if body.files is not None:
        raise falcon.HTTPBadRequest(description=(
            f"the part {TASK_PART!r}: a multipart submit sends its files as parts, not as 'files' in the task"))
    return body, batch.done()


def _disposition(part) -> tuple[str, str | None]:
    """(the part's name, its file name or None) from its Content-Disposition."""
    try:
        name, filename = part.name, part.filename
    except UnicodeDecodeError:
        raise falcon.HTTPBadRequest(description="a part's Content-Disposition header is not valid UTF-8") from None
    if not name:
        raise falcon.HTTPBadRequest(description="every part of the form needs a name (Content-Disposition: form-data; name=...)")
    return name, filename


class _FormFields:
    """The task of a multipart submit: its `task` part or its form fields,
    together within max_body_bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.room = max_bytes
        self.task: object = _NO_TASK
        self.fields: dict[str, object] = {}

    def read_task(self, part) -> None:
        what = f"the part {TASK_PART!r}"
        if self.task is not _NO_TASK:
            raise falcon.HTTPBadRequest(description=f"{what} is given twice")
        self.task = parse_json(self._read(part, what), what)

    def read_field(self, name: str, part) -> None:
        what = f"form field {name!r}"
        if name not in FORM_FIELDS:
            raise falcon.HTTPBadRequest(description=(
                f"{what}: unknown field; send the task as a part named {TASK_PART!r} (its JSON body) or as the "
                f"form fields {', '.join(sorted(FORM_FIELDS))}; a file needs a file name"))
        if name in self.fields:
            raise falcon.HTTPBadRequest(description=f"{what} is given twice")
        raw = self._read(part, what)
        if name in JSON_FIELDS:
            self.fields[name] = parse_json(raw, what)
            return
        try:
            self.fields[name] = raw.decode()
        except UnicodeDecodeError:
            raise falcon.HTTPBadRequest(description=f"{what} is not valid UTF-8 text") from None

    def _read(self, part, what: str) -> bytes:
        raw = part.stream.read(self.room + 1)
        if len(raw) > self.room:
            raise falcon.HTTPContentTooLarge(description=(
                f"{what}: the task's fields come to more than {self.max_bytes} bytes (max_body_bytes)"))
        self.room -= len(raw)
        return raw

    def body(self) -> object:
        """The task's JSON body; 400 when it is given both ways or not at all."""
        if self.task is not _NO_TASK and self.fields:
            raise falcon.HTTPBadRequest(description=(
                f"send the task either as the part {TASK_PART!r} or as form fields, not both "
                f"(got {TASK_PART!r} and {', '.join(sorted(self.fields))})"))
        if self.task is _NO_TASK and not self.fields:
            raise falcon.HTTPBadRequest(description=(
                f"no task in the form: send a part named {TASK_PART!r} holding the JSON body, "
                "or the form field 'instruction'"))
        return self.task if self.task is not _NO_TASK else self.fields
