"""What the benchmarks read from /proc: a process's CPU time (utime + stime), which holds on a shared machine
where calls/s do not, and the resident memory of a whole process tree."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` so far, in seconds (its own threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of stat(5), after "pid (comm)"


def children(pid: int) -> list[int]:
    """Every descendant of `pid`."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            try:
                kids = [int(kid) for kid in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(kids)
            pending.extend(kids)
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of one process."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError):
        return 0


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def tree_rss(pid: int) -> dict[str, int]:
    """RSS of `pid` and each descendant, keyed `pid command`, plus `total`."""
    rows = {f"{p} {command_of(p)[:80]}": rss_bytes(p) for p in [pid, *children(pid)]}
    rows["total"] = sum(rows.values())
    return rows


class CpuMeter:
    """CPU time a process spends over a stretch of work: `with CpuMeter(pid) as meter: ...; meter.seconds`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seconds = 0.0

    def __enter__(self) -> CpuMeter:
        self._start = cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = cpu_seconds(self.pid) - self._start
