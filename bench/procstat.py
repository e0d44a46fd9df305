"""CPU time and peak memory of a process (and its children) from Linux ``/proc``."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")

PARTS = ("contender", "broker", "database", "publisher")
"""The parts of the bench machine whose cores each ramp step records (``bench.harness.StepRecord.cores``)."""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant alive now."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes used so far (0 for those gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICK


def _status_mib(pids: list[int], field: str) -> float:
    total_kib = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return round(total_kib / 1024, 1)


def peak_rss_mib(pids: list[int]) -> float:
    """Sum of the processes' peak resident set sizes (``VmHWM``), MiB."""
    return _status_mib(pids, "VmHWM")


def rss_mib(pids: list[int]) -> float:
    """Sum of the processes' resident set sizes now (``VmRSS``), MiB."""
    return _status_mib(pids, "VmRSS")
