"""The results table of run_all.py, and the machine it ran on."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

#: Targets stated as a ratio (to the baseline, or to the peer); the rest
#: (ms, %, MB) are compared with our own figure.
RATIO_UNITS = ("x", "x the peer", "of ideal")


@dataclass
class Row:
    """One figure: ours, what it is compared with, and the target.

    `peer` is a number or the reason it is missing; `op` is ">=" or "<=";
    `note` says why ours is missing (empty when measured)."""

    figure: str
    ours: float | None
    baseline: float | None
    peer: float | str | None
    op: str
    target: float
    unit: str
    note: str = ""

    def ratio(self) -> float | None:
        if self.ours is None:
            return None
        if self.unit == "x the peer":
            return self.ours / self.peer if isinstance(self.peer, (int, float)) and self.peer else None
        return self.ours / self.baseline if self.baseline else None

    def met(self) -> str:
        value = self.ratio() if self.unit in RATIO_UNITS else self.ours
        if value is None:
            return "—"
        ok = value >= self.target if self.op == ">=" else value <= self.target
        return "yes" if ok else "**no**"


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 1 else f"{value:.1f}"


def _target(row: Row) -> str:
    if row.unit == "of ideal":
        return f"{row.op} {row.target:.0%} of ideal"
    if row.unit in ("x", "x the peer"):
        return f"{row.op} {row.target:g}{row.unit}"
    return f"{row.op} {row.target:g} {row.unit}"


def _ratio(row: Row) -> str:
    ratio = row.ratio()
    if ratio is None:
        return ""
    return f"{ratio:.0%}" if row.unit == "of ideal" else f"{ratio:.2f}x"


def render(rows: list[Row]) -> str:
    """A Markdown table, then the reasons for every figure not measured."""
    lines = ["| figure | ours | baseline | peer | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    notes = []
    for row in rows:
        ours = _number(row.ours) if row.ours is not None else "not measured"
        if row.ours is None and row.note:
            notes.append(f"- {row.figure}: {row.note}")
        peer = _number(row.peer) if isinstance(row.peer, (int, float)) else (row.peer or "")
        if isinstance(row.peer, (int, float)) and row.unit == "x" and row.baseline:
            peer += f" ({row.peer / row.baseline:.2f}x)"  # the peer's own ratio to the same baseline
        lines.append(f"| {row.figure} | {ours} | {_number(row.baseline)} | {peer} | {_ratio(row)} "
                     f"| {_target(row)} | {row.met()} |")
    return "\n".join(lines + ([""] + notes if notes else []))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gb() -> float:
    try:
        with open("/proc/meminfo") as meminfo:
            return int(meminfo.readline().split()[1]) / 1024 ** 2
    except (OSError, ValueError, IndexError):
        return float("nan")


def machine() -> str:
    """CPUs, CPU model, memory, kernel (no host name, no paths)."""
    return (f"{os.cpu_count()} CPUs ({_cpu_model()}), {_memory_gb():.1f} GB memory, "
            f"Linux {platform.release()}")
