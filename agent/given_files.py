"""Telling the model which files it was given with its task: its first
message is the instruction, then a list of the files (path and size),
which are in its working folder when its first block runs."""

from __future__ import annotations

from typing import Sequence

#: Files named one by one; past this many, the rest are only counted (the
#: service takes at most max_upload_files, 100 by default).
MAX_LISTED = 200

_INTRO = {
    "en": "Files given with this task, in your working folder (paths are relative to it):",
    "zh": "随任务提供的文件，位于你的工作目录中（路径相对于该目录）：",
}
_LINE = {"en": "- {path} ({size:,} bytes)", "zh": "- {path}（{size:,} 字节）"}
_MORE = {"en": "- … and {n} more", "zh": "- ……另有 {n} 个文件"}


def with_files_note(instruction: str, files: Sequence[dict], lang: str = "en") -> str:
    """The task's first message: its instruction, then the files handed in
    with it (`{"path", "size"}` each), if any. `lang` is "en" (default) or
    "zh"; anything else reads as English."""
    if not files:
        return instruction
    lang = lang if lang in _INTRO else "en"
    lines = [_LINE[lang].format(path=entry["path"], size=entry["size"]) for entry in files[:MAX_LISTED]]
    if len(files) > MAX_LISTED:
        lines.append(_MORE[lang].format(n=len(files) - MAX_LISTED))
    return "\n\n".join([instruction, "\n".join([_INTRO[lang], *lines])])
