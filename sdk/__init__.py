"""The Python client of AIPython Agent Mode.

    from sdk import AgentClient

    with AgentClient("http://127.0.0.1:8848", token=None) as client:
        submission = client.submit_task("Write a fibonacci function", {"source": "sdk"})
        for event in client.stream_events(submission.task_id):
            print(event.seq, event.type)
        result = client.wait_for_completion(submission.task_id, timeout=600)
        print(result.status, result.answer)

`AsyncAgentClient` is the same with `await`. It depends on httpx only, and
on nothing of the server.
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
    "FINISHED", "Task", "TaskResult", "TaskOutput", "Event", "BlockResult", "ErrorInfo", "Submission",
    "Cancellation", "TaskPage", "FileInfo",
]
