"""Telling the model which files it was given with its task."""

from __future__ import annotations

from typing import Sequence

_INTRO = {
    "en": "Files you were given, in your working folder:",
    "zh": "随任务提供的文件（在你的工作目录中）：",
}


def with_files_note(instruction: str, files: Sequence[dict], lang: str = "en") -> str:
    """The task's first message: its instruction, then the files handed in
    with it (path and size), if any."""
    if not files:
        return instruction
    lines = [f"- {entry['path']} ({entry['size']} bytes)" for entry in files]
    return "\n\n".join([instruction, "\n".join([_INTRO[lang], *lines])])
