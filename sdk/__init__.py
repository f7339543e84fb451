"""The Python client of AIPython Agent Mode.

    from sdk import AgentClient

    with AgentClient("http://127.0.0.1:8848", token=None) as client:
        submission = client.submit_task("Write a fibonacci function", {"source": "sdk"})
        for event in client.stream_events(submission.task_id):
            print(event.seq, event.type)
        result = client.wait_for_completion(submission.task_id, timeout=600)
        print(result.status, result.answer)

`AsyncAgentClient` is the same with `await`. It depends on httpx, httpx-sse
and tenacity, and on nothing of the server. `sdk.render` draws events as text
for people, and `sdk.tail` is `aipy-agent tail`.
"""

from .aclient import AsyncAgentClient
from .client import AgentClient
from .errors import (
    AgentError,
    APIError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    NotFound,
    ServerError,
    ServiceUnavailable,
    TaskTimeout,
    Unauthorized,
)
from .types import (
    FINISHED,
    BlockResult,
    CallbackDelivery,
    Cancellation,
    ErrorInfo,
    Event,
    FileInfo,
    Submission,
    Task,
    TaskOutput,
    TaskPage,
    TaskResult,
)

__all__ = [
    "AgentClient", "AsyncAgentClient",
    "AgentError", "APIError", "BadRequest", "Unauthorized", "NotFound", "Conflict", "ServerError",
    "ServiceUnavailable", "ConnectionFailed", "TaskTimeout",
    "FINISHED", "Task", "TaskResult", "TaskOutput", "Event", "BlockResult", "ErrorInfo", "CallbackDelivery",
    "Submission", "Cancellation", "TaskPage", "FileInfo",
]
