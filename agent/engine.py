"""The round loop: ask the model, run the code it asks for, report back, repeat.

`Engine.run` emits the spec's events through a callback, in this order:
`task_start`, then per round `llm_response` followed by `exec_start` /
`exec_result` for each block, then `error` (only when the task fails) and
always a last `task_end`. A task ends:

- `completed` when a reply asks to run nothing (that reply is the answer);
- `error` when the round limit is reached, the LLM fails for good, or
  something crashes, with the reason in `task_end.error`;
- `cancelled` when the cancel probe says so; the probe is polled every
  `cancel_poll_s` while the model streams and while code runs;
- `error` too when the task outlives `task_timeout_s`, checked as often, or
  when the probe returns a message instead of True (a server shutting down
  stops its tasks that way, with the reason it gives).

The engine knows nothing of HTTP, queues or files: its caller passes the
sink, the probe and the workspace folder.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .exec_result import ExecResult
from .exec_session import ExecSession
from .context import History
from .executor import Executor
from .given_files import with_files_note
from .limits import ExecLimits
from .prompt import render_result, render_round_results, system_prompt
from .protocol import CodeRequest, extract_blocks
from .providers import Aborted, LLMError, Provider, Reply, Turn, Usage
from .providers.retry import llm_retrying
from config.models import EngineSettings

#: `emit(event_type, content)`: where the engine reports what happens.
EventSink = Callable[[str, dict], Any]
#: Polled while the task runs: True cancels it; a message stops it as an error.
CancelProbe = Callable[[], "bool | str"]


def never_cancelled() -> bool:
    return False


@dataclass
class Outcome:
    """How a run ended; the same facts as its `task_end` event."""

    status: str
    answer: str | None = None
    error: str | None = None
    rounds: int = 0
    duration_ms: int = 0
    usage: Usage = field(default_factory=Usage)

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "answer": self.answer,
            "error": self.error,
            "rounds": self.rounds,
            "duration_ms": self.duration_ms,
            "usage": self.usage.to_dict(),
        }


class Engine:
    """Runs tasks with one provider, role and set of limits. Thread-safe:
    each `run` keeps its own conversation, so one engine may serve many
    tasks at once."""

    def __init__(
        self,
        provider: Provider,
        settings: EngineSettings | None = None,
        *,
        role: str = "",
        executor: Executor | None = None,
    ):
        self.provider = provider
        self.settings = settings or EngineSettings()
        self.executor = executor or Executor(ExecLimits.from_settings(self.settings))
        self.system = system_prompt(role, protocol=provider.settings.protocol, lang=self.settings.lang,
                                    python_state=self.settings.python_state)

    def run(
        self,
        instruction: str,
        workspace: Path,
        emit: EventSink,
        *,
        cancelled: CancelProbe = never_cancelled,
        task_id: str | None = None,
        history: History | None = None,
        given_files: Sequence[dict] = (),
    ) -> Outcome:
        """Run one task. `history`: the conversation it continues (a
        follow-up's earlier turns, see context.py); `given_files`: the files
        handed in with it (`{"path", "size"}`), which its first message names."""
        run = _Run(self, _opening(instruction, history, given_files, self.settings.lang), Path(workspace), emit,
                   cancelled)
        emit("task_start", {"instruction": instruction, "task_id": task_id})
        try:
            # The session holds the task's sandbox identity for all its
            # blocks; leaving it kills whatever the code left running.
            with self.executor.session(run.workspace) as run.session:
                outcome = run.loop()
            if outcome.status == "cancelled" and run.stop_error:
                emit("error", {"message": run.stop_error, "exception": "TaskStopped"})
                outcome = Outcome("error", error=run.stop_error)
        except SandboxFailed as exc:
            emit("error", {"message": str(exc), "exception": "SandboxError"})
            outcome = Outcome("error", error=str(exc))
        except LLMError as exc:
            emit("error", {"message": str(exc), "exception": exc.exception})
            outcome = Outcome("error", error=str(exc))
        except Exception as exc:  # a crash ends the task, never the worker
            message = f"internal error: {type(exc).__name__}: {exc}"
            emit("error", {"message": message, "exception": traceback.format_exc()})
            outcome = Outcome("error", error=message)
        outcome.rounds = run.rounds
        outcome.usage = run.usage
        outcome.duration_ms = int((time.monotonic() - run.started) * 1000)
        emit("task_end", outcome.to_dict())
        return outcome


def _opening(instruction: str, history: History | None, given_files: Sequence[dict], lang: str) -> list[Turn]:
    """The conversation a run starts with: a follow-up's earlier turns, if
    any, then the instruction, with the note on the history and the list of
    files given."""
    first = with_files_note(instruction, given_files, lang)
    if history is None or not history.turns:
        return [Turn("user", first)]
    return [*history.turns, Turn("user", f"{history.note(lang)}\n\n{first}")]


class SandboxFailed(Exception):
    """The sandbox could not start a block: the task fails, the model is not
    asked to work around a broken sandbox."""


class _Run:
    """The state of one task's run: its conversation, counters and probe."""

    session: ExecSession

    def __init__(self, engine: Engine, turns: list[Turn], workspace: Path, emit: EventSink, cancelled: CancelProbe):
        self.engine = engine
        self.settings = engine.settings
        self.workspace = workspace
        self.emit = emit
        self.cancel_requested = cancelled
        self.deadline = time.monotonic() + engine.settings.task_timeout_s
        self.stop_error: str | None = None
        self.turns = turns
        self.rounds = 0
        self.blocks = 0
        self.usage = Usage()
        self.started = time.monotonic()

    def cancelled(self) -> bool:
        """Stop for a cancel, the time limit or a stop with a reason; the
        last two set `stop_error`, which turns the end into an error."""
        if time.monotonic() >= self.deadline:
            limit = self.settings.task_timeout_s
            self.stop_error = f"task time limit reached: {limit:g} s (raise timeout_s for longer tasks)"
            return True
        verdict = self.cancel_requested()
        if isinstance(verdict, str) and verdict:
            self.stop_error = verdict
        return bool(verdict)

    def loop(self) -> Outcome:
        provider = self.engine.provider
        while True:
            if self.cancelled():
                return Outcome("cancelled")
            if self.rounds >= self.settings.max_rounds:
                message = (
                    f"stopped after max_rounds={self.settings.max_rounds} rounds without a final answer "
                    "(raise max_rounds or simplify the task)"
                )
                self.emit("error", {"message": message, "exception": "MaxRoundsExceeded"})
                return Outcome("error", error=message)
            self.rounds += 1
            reply = self.ask()
            if reply is None:
                return Outcome("cancelled")
            self.usage.add(reply.usage)
            self.emit(
                "llm_response",
                {"llm": provider.model, "message": reply.text, "round": self.rounds, "usage": reply.usage.to_dict()},
            )
            requests = reply.tool_calls if provider.uses_tools else extract_blocks(reply.text)
            if not requests:
                return Outcome("completed", answer=reply.text)
            self.turns.append(Turn("assistant", reply.text, tool_calls=reply.tool_calls))
            rendered = self.execute_all(requests)
            if rendered is None:
                return Outcome("cancelled")
            if provider.uses_tools:
                self.turns.append(Turn("results", results=rendered))
            else:
                self.turns.append(Turn("user", render_round_results([text for _, text, _ in rendered], self.settings.lang)))

    def ask(self) -> Reply | None:
        """One LLM call (with retries) on a helper thread, so that the probe
        is polled even while the SDK blocks on the socket. None = cancelled."""
        abort = threading.Event()
        box: dict[str, Any] = {}
        turns = list(self.turns)

        def call() -> None:
            try:
                retrying = llm_retrying(retries=self.settings.llm_retries, backoff_s=self.settings.llm_backoff_s,
                                        abort=abort)
                box["reply"] = retrying(self.engine.provider.complete, self.engine.system, turns, abort)
            except BaseException as exc:  # handed to the engine's thread
                box["error"] = exc

        worker = threading.Thread(target=call, name="llm-call", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(self.settings.cancel_poll_s)
            if worker.is_alive() and self.cancelled():
                # The worker notices at its next chunk or wait; its socket is
                # bounded by the LLM timeout, so it cannot linger for long.
                abort.set()
                return None
        error = box.get("error")
        if isinstance(error, Aborted):
            return None
        if error is not None:
            raise error
        return box["reply"]

    def execute_all(self, requests: list[CodeRequest]) -> list[tuple[str, str, bool]] | None:
        """Run each requested block in order; None when cancelled midway."""
        rendered = []
        for request in requests:
            if self.cancelled():
                return None
            self.blocks += 1
            name = request.name or f"block-{self.blocks}"
            self.emit("exec_start", {"block_name": name, "language": request.language, "code": request.code})
            result = self.execute(request)
            self.emit("exec_result", {"block_name": name, "language": request.language, "result": result.to_dict()})
            if result.not_started:
                raise SandboxFailed(result.not_started)
            if result.status == "cancelled":
                return None
            rendered.append((request.call_id, render_result(name, request.language, result), result.status != "success"))
        return rendered

    def execute(self, request: CodeRequest) -> ExecResult:
        if request.error:
            return ExecResult("error", request.error, "", "", None, 0)
        return self.session.run(request.language, request.code, filename=request.name, cancelled=self.cancelled)
