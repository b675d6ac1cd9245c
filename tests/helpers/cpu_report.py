"""A pytest plugin that measures CPU per test module: `./dev test -p tests.helpers.cpu_report`.

For each test it adds up the CPU (user + system) of the pytest process and of the children it has waited
for (the gateways, backends and redis-servers the test started and stopped) over setup, call and teardown,
so a module's scoped fixtures count in its first and last test. On a shared machine wall time follows the
load; CPU is what a change to the suite saves. Each worker appends a line per test to
`$MCP_GATEWAY_TEST_CPU` (default `.pytest-cpu.jsonl`, emptied at the start of a run); the end of the run
prints the modules by CPU, with their wall time (the order `LONGEST_FIRST` in tests/conftest.py keeps).
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path

import pytest

SHOWN = 30  # modules printed at the end


def _path() -> Path:
    return Path(os.environ.get("MCP_GATEWAY_TEST_CPU", ".pytest-cpu.jsonl"))


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if not _is_worker(config):
        _path().write_text("")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    cpu, wall = _cpu(), time.monotonic()
    yield
    line = {"test": item.nodeid, "cpu": round(_cpu() - cpu, 3), "wall": round(time.monotonic() - wall, 3)}
    with _path().open("a") as out:
        out.write(json.dumps(line) + "\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if _is_worker(config) or not _path().exists():
        return
    cpu: dict[str, float] = defaultdict(float)
    wall: dict[str, float] = defaultdict(float)
    for text in _path().read_text().splitlines():
        line = json.loads(text)
        module = line["test"].split("::", 1)[0]
        cpu[module] += line["cpu"]
        wall[module] += line["wall"]
    terminalreporter.section("CPU per module (s: this process + waited children; wall s)")
    for module in sorted(cpu, key=cpu.__getitem__, reverse=True)[:SHOWN]:
        terminalreporter.write_line(f"{cpu[module]:8.1f} cpu {wall[module]:8.1f} wall  {module}")
    terminalreporter.write_line(f"{sum(cpu.values()):8.1f} cpu {sum(wall.values()):8.1f} wall  (all {len(cpu)})")
