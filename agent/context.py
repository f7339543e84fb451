"""The conversation a follow-up task starts with: the earlier tasks' turns,
rebuilt from their event logs, within a budget of characters.

Each earlier task gives its instruction (a user turn), each reply of the
model (an assistant turn; the code it ran is written out as fenced blocks
when the reply's text does not already hold it, as with tool calls) and the
results of that reply's blocks (a user turn). Whatever protocol the new task
speaks, the history is plain text turns, so any provider can read it.

Over the budget, the oldest results are cut first (their text is replaced by
a short mark), then, if that is not enough, the oldest turns are dropped;
the new task's model is told how much was cut (`trim_note`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .exec_result import ExecResult
from .prompt import render_result
from .providers import Turn

#: What replaces a result cut to fit the budget.
CUT = {"en": "[output left out to fit the context]", "zh": "[为节省上下文，此处输出已省略]"}

_RESULTS_HEAD = {"en": "Results of the code blocks:", "zh": "代码块的运行结果："}
_ENDED = {
    "en": "(That task ended: {status}{error}.)",
    "zh": "（该任务已结束：{status}{error}。）",
}
_TRIMMED = {
    "en": "Note: the conversation above is from earlier tasks; {n} of its oldest results were left out to fit.",
    "zh": "注意：以上对话来自之前的任务；为节省上下文，省略了其中最早的 {n} 段运行结果。",
}
_EARLIER = {
    "en": "Note: the conversation above is from earlier tasks, whose files are in your working folder.",
    "zh": "注意：以上对话来自之前的任务，其文件在你的工作目录中。",
}

#: The longest single result kept, before the budget is even looked at.
MAX_RESULT_CHARS = 8000


@dataclass
class History:
    """Turns to start a follow-up with, and what its first message should add."""

    turns: list[Turn]
    cut: int = 0  # results left out to fit the budget

    def note(self, lang: str = "en") -> str:
        if not self.turns:
            return ""
        return _TRIMMED[lang].format(n=self.cut) if self.cut else _EARLIER[lang]


def task_turns(instruction: str, events: Iterable[dict], lang: str = "en") -> list[Turn]:
    """One earlier task's conversation from its events (engine event shapes)."""
    turns = [Turn("user", instruction)]
    reply: str | None = None
    code: list[str] = []
    results: list[str] = []
    end: dict = {}

    def close_round() -> None:
        nonlocal reply, code, results
        if reply is None:
            return
        missing = [block for block in code if block not in reply]
        turns.append(Turn("assistant", "\n\n".join([reply, *missing]) if missing else reply))
        if results:
            turns.append(Turn("user", "\n\n".join([_RESULTS_HEAD[lang], *results])))
        reply, code, results = None, [], []

    for event in events:
        kind, content = event.get("type"), event.get("content")
        content = content if isinstance(content, dict) else {}
        if kind == "llm_response":
            close_round()
            reply = str(content.get("message") or "")
        elif kind == "exec_start" and reply is not None:
            code.append(f"```{content.get('language') or ''}\n{content.get('code') or ''}\n```")
        elif kind == "exec_result" and reply is not None:
            results.append(_result_text(content))
        elif kind == "task_end":
            end = content
    close_round()
    if turns[-1].role != "assistant":  # it ended without a final answer
        error = f": {end['error']}" if end.get("error") else ""
        turns.append(Turn("assistant", _ENDED[lang].format(status=end.get("status", "stopped"), error=error)))
    return turns


def _result_text(content: dict) -> str:
    """A block's result as the model saw it when it ran (prompt.render_result),
    cut at MAX_RESULT_CHARS."""
    result = content.get("result")
    text = render_result(str(content.get("block_name")), str(content.get("language")),
                         ExecResult.from_dict(result if isinstance(result, dict) else {}))
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + "\n[…]"


def fit(tasks: Sequence[list[Turn]], budget_chars: int, lang: str = "en") -> History:
    """The turns of `tasks` (oldest first) within `budget_chars`: results
    are cut oldest first, then whole turns are dropped oldest first (never
    leaving a conversation that starts with the model's turn)."""
    turns = [Turn(turn.role, turn.text) for task in tasks for turn in task]
    size = sum(len(turn.text) for turn in turns)
    cut = 0
    for turn in turns:
        if size <= budget_chars:
            break
        if turn.role == "user" and turn.text.startswith(_RESULTS_HEAD[lang]):
            size -= len(turn.text) - len(CUT[lang])
            turn.text = CUT[lang]
            cut += 1
    while turns and size > budget_chars:
        size -= len(turns.pop(0).text)
    while turns and turns[0].role != "user":
        turns.pop(0)
    return History(turns, cut)
