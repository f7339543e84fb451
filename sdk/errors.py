"""The SDK's exceptions.

Everything the clients raise is an `AgentError`:

- `APIError` when the server answered with an error status. It carries the
  status code, the server's own `detail` message and the `httpx.Response`;
  a subclass per status says what kind of problem it was.
- `ConnectionFailed` when no answer came: the server is unreachable, the
  connection dropped, or a request timed out.
- `TaskTimeout` when a task did not finish within the time a caller gave it.
  It is also a `TimeoutError`, so `except TimeoutError` catches it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import httpx


class AgentError(Exception):
    """Base class of every error the SDK raises."""


class APIError(AgentError):
    """The server answered with an error status (4xx or 5xx)."""

    def __init__(self, message: str, *, status_code: int, detail: str, response: "httpx.Response | None" = None):
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail
        self.response = response


class BadRequest(APIError):
    """400: the request was invalid, or the task cannot be cancelled."""


class Unauthorized(APIError):
    """401: the API token is missing or wrong."""


class NotFound(APIError):
    """404: no such task, file or route."""


class Conflict(APIError):
    """409: the request conflicts with the task's state (not sent by current servers)."""


class ServerError(APIError):
    """5xx: the server failed; the details are in its log."""


class ServiceUnavailable(ServerError):
    """503: the task queue or the storage is unavailable; try again later."""


class ConnectionFailed(AgentError):
    """No answer from the server: unreachable, connection dropped or timed out."""


class TaskTimeout(AgentError, TimeoutError):
    """The task was still unfinished when the caller's timeout ran out.

    `task_id` names the task and `status` is the last status seen; the task
    itself keeps running on the server.
    """

    def __init__(self, task_id: str, timeout: float, status: str | None = None):
        super().__init__(f"task {task_id} still {status or 'unfinished'} after {timeout:g} s")
        self.task_id = task_id
        self.timeout = timeout
        self.status = status


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    503: ServiceUnavailable,
}


def error_for(response: "httpx.Response") -> APIError:
    """The exception for an error response, with the server's `detail`
    (every error body is `{"detail": "..."}`; anything else is quoted)."""
    status = response.status_code
    detail = _detail(response)
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    message = f"{status} {response.reason_phrase}: {detail}" if detail else f"{status} {response.reason_phrase}"
    return kind(message, status_code=status, detail=detail, response=response)


def _detail(response: "httpx.Response") -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    return response.text.strip()[:500]
