"""Fixtures shared by every test module, and the `slow` mark.

A test is marked `slow` when it starts real processes (a gateway, a backend, redis-server, npx): its module
imports the process helpers (`tests.helpers.*`, `subprocess`, a stdio MCP transport), directly or through
another test module, or one of its fixtures uses them. `./dev test -m "not slow"` runs the rest, the unit subset.

Order: under `--dist loadscope` xdist hands each worker one module (scope) at a time, in collection order
(this file turns off its reordering by test count). The modules that take longest start first, then the
other slow modules, then the unit modules, which fill the workers' last minutes; so the run does not end
waiting on one long module that started late.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers.redis_proc import RedisProcess


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A fresh redis-server on a free port, killed at the end of the test."""
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


PROCESS_MODULES = frozenset(
    {
        "subprocess",
        "multiprocessing",
        "fastmcp.client.transports.stdio",  # StdioTransport starts the server it talks to
        "tests.helpers.procs",
        "tests.helpers.redis_proc",
        "tests.helpers.redis_cluster",
    }
)


def _origin(value: Any) -> str:
    """The module a global of a test module comes from."""
    return value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None) or ""


def _starts_processes(module: ModuleType, seen: frozenset[str] = frozenset()) -> bool:
    """Whether `module` uses the process helpers, itself or through the test modules it imports from."""
    for value in vars(module).values():
        origin = _origin(value)
        if origin in PROCESS_MODULES:
            return True
        if origin.startswith("tests.") and origin != module.__name__ and origin not in seen:
            imported = sys.modules.get(origin)
            if imported is not None and _starts_processes(imported, seen | {module.__name__}):
                return True
    return False


def _fixture_starts_processes(conftest: ModuleType, name: str) -> bool:
    """Whether fixture `name` of `conftest` names a process helper in its body."""
    fixture = getattr(conftest, name, None)
    if fixture is None:
        return False
    code = inspect.unwrap(fixture).__code__
    return any(_origin(conftest.__dict__.get(used)) in PROCESS_MODULES for used in code.co_names)


# The longest modules, longest first: CPU per module of a full run (`-p tests.helpers.cpu_report`; the suite
# is CPU-bound on 2 cores, so a module's share of the CPU is its share of the wall), the modules that wait
# out timers (reloads, restarts, drains) moved up. Measured 2026-12-01 (issue 11).
LONGEST_FIRST = (
    "tests/servers/ai_memory/test_ai_memory_replicas_snowflake.py",
    "tests/gateway/test_reload.py",
    "tests/ops/test_replicas.py",
    "tests/conformance/test_conformance.py",
    "tests/servers/ai_memory/test_ai_memory_cortex.py",
    "tests/gateway/test_cli.py",
    "tests/servers/ai_memory/test_ai_memory_redis_scope.py",
    "tests/gateway/security/test_secrets_and_audit.py",
    "tests/gateway/resilience/test_breakers.py",
    "tests/gateway/resilience/test_redis.py",
    "tests/gateway/security/test_leaks.py",
    "tests/gateway/security/test_origin_and_limits.py",
    "tests/gateway/security/test_auth.py",
    "tests/gateway/resilience/test_cache.py",
    "tests/servers/ai_memory/test_ai_memory_replicas.py",
    "tests/gateway/test_routing.py",
    "tests/gateway/test_discovery.py",
    "tests/gateway/test_failures.py",
    "tests/gateway/ops/test_log_format.py",
    "tests/gateway/security/test_bind.py",
    "tests/ops/test_shutdown.py",
    "tests/gateway/test_bad_input.py",
)


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "dist", None) == "loadscope":
        config.option.loadscopereorder = False  # keep the order pytest_collection_modifyitems sets


def _module_path(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    conftests = [m for name, m in sys.modules.items() if name.startswith("tests") and name.endswith("conftest")]
    for item in items:
        module = getattr(item, "module", None)
        slow = module is not None and _starts_processes(module)
        fixtures = getattr(item, "fixturenames", ())
        slow = slow or any(_fixture_starts_processes(c, f) for c in conftests for f in fixtures)
        if slow:
            item.add_marker(pytest.mark.slow)
    slow_modules = {_module_path(item) for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        path = _module_path(item)
        if path in LONGEST_FIRST:
            return LONGEST_FIRST.index(path)
        return len(LONGEST_FIRST) + (path not in slow_modules)

    items.sort(key=rank)  # stable: each module's tests stay together and in their order
