"""Reading what the benchmark scripts print, tolerantly.

The scripts run_all.py calls are written by different hands and change: a
final JSON line is preferred (the new modules print one); otherwise the
figures are picked out of their human-readable lines by pattern. Every
reader returns None for a figure it cannot find, never raises.
"""

from __future__ import annotations

import json
import re

NUMBER = r"(\d+(?:\.\d+)?)"


def last_json(text: str) -> dict | None:
    """The last line of `text` that is a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def flatten(value, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts, keyed by their lower-cased dotted path."""
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{str(key).lower()}."))
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {prefix.rstrip("."): float(value)}
    return {}


def pick(numbers: dict[str, float], *words: str, avoid: tuple[str, ...] = ()) -> float | None:
    """The first number whose key holds every one of `words` and none of `avoid`."""
    for key, value in numbers.items():
        if all(word in key for word in words) and not any(word in key for word in avoid):
            return value
    return None


def _line_value(text: str, line_pattern: str, value_pattern: str) -> float | None:
    """The value on the last line that matches: summaries come after the
    per-round lines ("round 2: bare ... req/s, get ..."), which are skipped."""
    for line in reversed(text.splitlines()):
        if line.lstrip().lower().startswith("round"):
            continue
        if re.search(line_pattern, line, re.IGNORECASE):
            found = re.search(value_pattern, line, re.IGNORECASE)
            if found:
                return float(found.group(1))
    return None


def api_throughput(text: str) -> dict[str, float | None]:
    """bare, get and post req/s (embedded), and get/post req/s over Redis
    (web process alone) where the script prints them."""
    numbers = flatten(last_json(text) or {})
    if numbers:
        return {"bare": pick(numbers, "bare"),
                "get": pick(numbers, "get", avoid=("redis", "ratio", "bare")),
                "post": pick(numbers, "post", avoid=("redis", "ratio", "bare")),
                "redis_get": pick(numbers, "redis", "get", avoid=("ratio",)),
                "redis_post": pick(numbers, "redis", "post", avoid=("ratio",))}
    rate = NUMBER + r"\s*req/s"
    return {"bare": _line_value(text, r"bare", rate),
            "get": _line_value(text, r"^(?!.*redis).*\bGET\b", rate),
            "post": _line_value(text, r"^(?!.*redis).*\bPOST\b", rate),
            "redis_get": _line_value(text, r"redis.*\bGET\b|\bGET\b.*redis", rate),
            "redis_post": _line_value(text, r"redis.*\bPOST\b|\bPOST\b.*redis", rate)}


def idle_cpu(text: str) -> dict[str, float | None]:
    """Idle CPU, % of a core: the embedded server's and the Redis worker's."""
    numbers = flatten(last_json(text) or {})
    if numbers:
        return {"server": pick(numbers, "server", avoid=("redis-server", "redis_server", "thread"))
                or pick(numbers, "embedded", avoid=("thread",)) or pick(numbers, "web", avoid=("thread",)),
                "worker": pick(numbers, "worker", avoid=("thread",))}
    percent = NUMBER + r"\s*%"
    return {"server": _line_value(text, r"^(?!.*(worker|redis-server)).*(server|embedded)", percent),
            "worker": _line_value(text, r"worker", percent)}


def kernel_overhead(text: str) -> float | None:
    """The kernel mode's p50 overhead per block, in ms."""
    return _line_value(text, r"^kernel", NUMBER + r"\s*ms")


def submit_latency(text: str) -> dict[str, float | None]:
    """Submit -> task_start p50 in ms, embedded and over Redis."""
    p50 = r"p50\s*" + NUMBER
    return {"embedded": _line_value(text, r"^embedded", p50), "redis": _line_value(text, r"^redis", p50)}
