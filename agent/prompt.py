"""The words the engine says to the model: the system prompt and the report
of each round's execution results, in English or Chinese (`AIPYTHON_LANG`).

The system prompt is the configured role followed by the protocol: how to ask
for code to run (tool calls or fenced blocks), that results come back, and
how to finish (a reply that asks to run nothing is the final answer).
"""

from __future__ import annotations

import platform

from .executor import ExecResult

_PROTOCOL = {
    ("en", "tools"): (
        "## How you work\n"
        "- To run code, call the `execute` tool with `language` (python, bash or sh), "
        "`code`, and optionally `name`, a file name to save the code as (e.g. count_lines.py).\n"
        "- Each call runs in the task's workspace, which is the current directory; files "
        "written there are kept as the task's results. Each result comes back to you with "
        "the exit status, stdout and stderr.\n"
        "- If something fails, read the error, fix the code and run it again.\n"
        "- When the task is done, reply WITHOUT calling the tool: that reply is the final "
        "answer shown to the user."
    ),
    ("en", "markdown"): (
        "## How you work\n"
        "- To run code, write a fenced block whose info string is the language (python, bash "
        "or sh) and optionally a file name to save it as, for example:\n"
        "```python count_lines.py\nprint('hello')\n```\n"
        "- Every python, bash or sh block in your reply is run, in order, in the task's "
        "workspace (the current directory); files written there are kept as the task's "
        "results. The results come back to you in the next message.\n"
        "- Use ```text for anything that is not meant to run.\n"
        "- If something fails, read the error, fix the code and run it again.\n"
        "- When the task is done, reply with NO runnable block: that reply is the final answer "
        "shown to the user."
    ),
    ("zh", "tools"): (
        "## 工作方式\n"
        "- 需要运行代码时，调用 `execute` 工具，参数为 `language`（python、bash 或 sh）、"
        "`code`，以及可选的 `name`（保存代码的文件名，例如 count_lines.py）。\n"
        "- 每次调用都在任务工作区（即当前目录）中运行；写入工作区的文件会作为任务结果保留。"
        "运行结果（退出状态、stdout 和 stderr）会返回给你。\n"
        "- 如果出错，请阅读错误信息，修正代码后重新运行。\n"
        "- 任务完成后，请直接回复且不要调用工具：这条回复就是展示给用户的最终答案。"
    ),
    ("zh", "markdown"): (
        "## 工作方式\n"
        "- 需要运行代码时，写一个围栏代码块，信息串为语言（python、bash 或 sh），可选地跟一个保存用的文件名，例如：\n"
        "```python count_lines.py\nprint('hello')\n```\n"
        "- 回复中的每个 python、bash 或 sh 代码块都会按顺序在任务工作区（即当前目录）中运行；"
        "写入工作区的文件会作为任务结果保留。运行结果会在下一条消息中返回给你。\n"
        "- 不需要运行的内容请使用 ```text。\n"
        "- 如果出错，请阅读错误信息，修正代码后重新运行。\n"
        "- 任务完成后，请回复且不包含任何可运行的代码块：这条回复就是展示给用户的最终答案。"
    ),
}

_ENVIRONMENT = {
    "en": "## Environment\nPython {python} on {system}.",
    "zh": "## 运行环境\nPython {python}，{system}。",
}

#: How Python state lasts, by `python_state`.
_STATE = {
    ("en", "kernel"): (
        "Python code runs in one interpreter for the whole task, as the cells of a notebook do: "
        "variables, imports, functions and open files from earlier python blocks are still there, and "
        "the value of a block's last bare expression is shown to you. Each block starts in the "
        "workspace, and processes it starts are stopped when it ends. If a block times out or is "
        "cancelled, Python restarts and the earlier state is gone (you are told so). bash and sh blocks "
        "run as processes of their own."
    ),
    ("en", "fresh"): (
        "Every python block runs in a fresh interpreter: variables and imports do not carry over from "
        "one block to the next, so keep what later blocks need in files. bash and sh blocks run as "
        "processes of their own too."
    ),
    ("zh", "kernel"): (
        "整个任务的 Python 代码都在同一个解释器中运行，就像笔记本（notebook）的单元格一样：先前 python 代码块中的"
        "变量、导入、函数和打开的文件仍然存在，代码块最后一个单独表达式的值会显示给你。每个代码块都从工作区开始运行，"
        "它启动的进程会在它结束时被终止。如果某个代码块超时或被取消，Python 会重新启动，之前的状态随之丢失（届时会告诉你）。"
        "bash 和 sh 代码块在各自独立的进程中运行。"
    ),
    ("zh", "fresh"): (
        "每个 python 代码块都在新的解释器中运行：变量和导入不会从一个代码块保留到下一个，后续代码块需要的内容请保存到文件中。"
        "bash 和 sh 代码块同样在各自独立的进程中运行。"
    ),
}

_RESULTS_INTRO = {
    "en": "Results of your code blocks:",
    "zh": "代码块的运行结果：",
}

_RESULTS_OUTRO = {
    "en": "Continue. If the task is done, reply with the final answer and no runnable block.",
    "zh": "请继续。如果任务已完成，请给出最终答案，且不要包含可运行的代码块。",
}


def system_prompt(role: str, *, protocol: str, lang: str = "en", python_state: str = "kernel") -> str:
    """The role, then how to ask for code and finish, then the environment,
    including how Python state lasts (`python_state`: "kernel" or "fresh")."""
    environment = _ENVIRONMENT[lang].format(
        python=platform.python_version(), system=f"{platform.system()} {platform.machine()}".strip()
    )
    environment += "\n" + _STATE[(lang, python_state)]
    return "\n\n".join(part for part in (role.strip(), _PROTOCOL[(lang, protocol)], environment) if part)


def render_result(block_name: str, language: str, result: ExecResult) -> str:
    """One block's outcome as the model reads it: status line, the runtime's
    notice, the streams, then the value of a final bare expression."""
    head = f"{block_name} ({language}): {result.status}"
    if result.returncode is not None:
        head += f", exit code {result.returncode}"
    head += f", {result.duration_ms} ms"
    parts = [head]
    if result.notice:
        parts.append(result.notice)
    if result.stdout:
        parts.append(f"--- stdout ---\n{result.stdout.rstrip()}")
    if result.stderr:
        parts.append(f"--- stderr ---\n{result.stderr.rstrip()}")
    if result.value is not None:
        parts.append(f"--- value ---\n{result.value}")
    if result.returncode is None and result.output:
        parts.append(result.output.rstrip())
    if len(parts) == 1:
        parts.append("(no output)")
    return "\n".join(parts)


def render_round_results(rendered: list[str], lang: str = "en") -> str:
    """All of a round's results as one user message (markdown protocol)."""
    body = "\n\n".join(f"```text\n{text}\n```" for text in rendered)
    return f"{_RESULTS_INTRO[lang]}\n\n{body}\n\n{_RESULTS_OUTRO[lang]}"
