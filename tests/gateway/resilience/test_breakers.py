"""Circuit breakers, timeouts, retries and bulkheads against backends that fail, crash, hang, answer garbage
or fail half the time, while a healthy backend keeps answering."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.gateway.resilience.conftest import call, client, faulty_server, garbage_server, health, stats, until
from tests.helpers import local_http
from tests.helpers.procs import GatewayProcess, http_backend, write_config

NO_CACHE_STATS = {"tools": {"stats": {"cache": False}}}


@pytest.fixture(scope="module")
def healthy() -> Iterator[dict[str, str]]:
    """The healthy backend beside the failing one: one echo process over Streamable HTTP for every test here
    (each only checks that it still answers, so none sees another's calls)."""
    with http_backend("healthy") as url:
        yield {"url": url}


async def test_upstream_failures_open_the_breaker_and_a_probe_closes_it(
    tmp_path: Path, healthy: dict[str, str]
) -> None:
    config = write_config(
        tmp_path,
        {"faulty": faulty_server(), "healthy": healthy},
        # reset_timeout bounds the window in which the call right after the opening must fail fast: wide
        # enough for a loaded machine, and the probe after it is awaited, not timed
        gateway={"breaker": {"fail_max": 2, "reset_timeout": 5.0}, "servers": {"faulty": NO_CACHE_STATS}},
    )
    gateway = GatewayProcess(config)
    try:
        gateway.wait_backends_up()  # the HTTP backend is up first: /ready needs only one
        async with client(gateway) as c:
            for _ in range(3):  # the tool's own errors are not the backend failing
                error, text, _ = await call(c, "faulty_mistake")
                assert error and "no such record" in text
            assert (await health(gateway))["breakers"]["faulty"]["state"] == "closed"

            for _ in range(2):  # upstream 5xx, surfaced as tool errors by the integration server
                error, text, _ = await call(c, "faulty_fail")
                assert error and "502" in text
            error, text, _ = await call(c, "faulty_read", {"key": "a"})  # at once: within reset_timeout
            assert error and "'faulty'" in text and "failing fast" in text and "retried in" in text
            doc = await health(gateway)
            assert doc["breakers"]["faulty"]["opened"] == 1
            assert doc["breakers"]["faulty"]["last_failure"] == "upstream_5xx"
            error, text, _ = await call(c, "healthy_echo", {"text": "still here"})
            assert not error and text == "still here"

            async def probe_succeeds() -> bool:
                error, _, _ = await call(c, "faulty_read", {"key": "a"})
                return not error

            await until(probe_succeeds, timeout=120, interval=0.1)
            doc = await health(gateway)
            assert doc["breakers"]["faulty"]["state"] == "closed"
            assert doc["breakers"]["faulty"]["opened"] == 1
            assert doc["breakers"]["faulty"]["rejected"] >= 1
            counts = await stats(c)
            assert counts["fail"] == 2  # nothing reached the backend while the breaker was open
            assert counts["read"] == 1  # only the probe
            async with local_http.async_client() as http:
                metrics = (await http.get(gateway.base + "/metrics")).text
            assert 'mcp_gateway_breaker_opened_total{breaker="faulty"} 1.0' in metrics
            assert 'mcp_gateway_breaker_state{breaker="faulty"} 0.0' in metrics
    finally:
        log = gateway.stop()
    assert "breaker faulty: half-open -> closed" in log


async def test_calls_while_a_crashed_backend_restarts_fail_fast_and_do_not_trip_the_breaker(
    tmp_path: Path, healthy: dict[str, str]
) -> None:
    """Issue 16, point 1: a polling client behind a crashing backend. The calls made while the supervisor
    restarts it say "restarting" (they do not count, so the breaker never opens), and the first call after
    /health says `up` succeeds. Each client call counts once however many attempts it made."""
    config = write_config(
        tmp_path,
        {"faulty": faulty_server(), "healthy": healthy},
        gateway={
            "restart_backoff_initial": 1.5,
            "breaker": {"fail_max": 3, "reset_timeout": 30},
            "retry": {"initial_backoff": 0.01, "max_backoff": 0.02},
            "servers": {"faulty": {"tools": {"stats": {"cache": False}, "read": {"cache": False}}}},
        },
    )
    gateway = GatewayProcess(config)
    try:
        gateway.wait_backends_up()  # the HTTP backend is up first: /ready needs only one
        async with client(gateway) as c, anyio.create_task_group() as group:
            hung: list[str] = []

            async def hang() -> None:
                hung.append((await call(c, "faulty_hang", {"tag": "in flight"}))[1])

            group.start_soon(hang)  # a read-only call in flight when the backend dies: retried, counted once
            await until(lambda: _hanging(c))
            error, text, _ = await call(c, "faulty_crash")
            assert error and "faulty" in text
            await until(lambda: hung)
            assert "faulty" in hung[0]

            texts = []
            while (await health(gateway))["backends"]["faulty"]["state"] != "up":
                error, text, _ = await call(c, "faulty_read", {"key": "x"})
                texts.append(text)
                await anyio.sleep(0.05)
            assert texts and all("restarting" in text for text in texts if text != "x#1"), texts
            assert not any("failing fast" in text for text in texts), texts
            error, text, _ = await call(c, "faulty_read", {"key": "y"})  # the first call after "up"
            assert not error and text.startswith("y#"), text
            doc = await health(gateway)
            assert doc["breakers"]["faulty"]["state"] == "closed"
            assert doc["breakers"]["faulty"]["opened"] == 0
            assert doc["breakers"]["faulty"]["total_failures"] == 2  # the crash call and the hung call
            assert doc["backends"]["faulty"]["restarts"] == 1
    finally:
        gateway.stop()


async def _hanging(c: object) -> bool:
    return (await stats(c)).get("hang", 0) >= 1  # type: ignore[arg-type]


async def test_a_restart_closes_an_open_breaker(tmp_path: Path, healthy: dict[str, str]) -> None:
    """Calls in flight when a backend dies can open its breaker; the supervisor's successful restart
    (handshake and tool list) closes it, so calls succeed at once instead of after `reset_timeout`."""
    config = write_config(
        tmp_path,
        {"faulty": faulty_server(), "healthy": healthy},
        gateway={
            "restart_backoff_initial": 0.5,
            "breaker": {"fail_max": 1, "reset_timeout": 600},
            "servers": {"faulty": NO_CACHE_STATS},
        },
    )
    gateway = GatewayProcess(config)
    try:
        gateway.wait_backends_up()  # the HTTP backend is up first: /ready needs only one
        async with client(gateway) as c:
            error, _, _ = await call(c, "faulty_crash")
            assert error
            assert (await health(gateway))["breakers"]["faulty"]["state"] == "open"
            await until(lambda: _up(gateway))
            error, text, _ = await call(c, "faulty_read", {"key": "z"})
            assert not error and text.startswith("z#"), text
            assert (await health(gateway))["breakers"]["faulty"]["opened"] == 1
    finally:
        log = gateway.stop()
    assert "breaker faulty: open -> closed" in log


async def _up(gateway: GatewayProcess) -> bool:
    return (await health(gateway))["backends"]["faulty"]["state"] == "up"


async def test_hung_call_times_out_and_the_backend_is_sent_a_cancellation(
    tmp_path: Path, healthy: dict[str, str]
) -> None:
    cancel_file = tmp_path / "cancelled.txt"
    config = write_config(
        tmp_path,
        {"faulty": faulty_server(FAULTY_CANCEL_FILE=str(cancel_file)), "healthy": healthy},
        gateway={"servers": {"faulty": {"tools": {"hang": {"timeout": 0.5}}}}},
    )
    gateway = GatewayProcess(config)
    try:
        gateway.wait_backends_up()  # the HTTP backend is up first: /ready needs only one
        async with client(gateway) as c:
            error, text, _ = await call(c, "faulty_hang", {"tag": "first"})
            assert error and "timed out after 0.5 s" in text and "'faulty'" in text
            await until(lambda: cancel_file.exists() and "cancelled first" in cancel_file.read_text())
            error, text, _ = await call(c, "faulty_read", {"key": "k"})  # the session is still good
            assert not error and text == "k#1"
    finally:
        gateway.stop()


async def test_garbage_answers_are_errors_that_open_the_breaker(tmp_path: Path, healthy: dict[str, str]) -> None:
    config = write_config(
        tmp_path,
        {"garbage": garbage_server(), "healthy": healthy},
        gateway={
            "servers": {
                "garbage": {
                    "breaker": {"fail_max": 3, "reset_timeout": 60},
                    "retry": {"attempts": 1},
                    "tools": {"not_json": {"timeout": 0.5}},
                }
            }
        },
    )
    gateway = GatewayProcess(config)
    try:
        gateway.wait_backends_up()  # the HTTP backend is up first: /ready needs only one
        async with client(gateway) as c:
            error, text, _ = await call(c, "garbage_ok")
            assert not error and text == "fine"
            error, text, _ = await call(c, "garbage_bad_result")
            assert error and "invalid result" in text
            error, text, _ = await call(c, "garbage_internal_error")
            assert error and "kaboom" in text
            error, text, _ = await call(c, "garbage_not_json")
            assert error and "timed out" in text
            error, text, _ = await call(c, "garbage_ok", {"n": 2})  # not the cached call
            assert error and "failing fast" in text
            error, text, _ = await call(c, "healthy_echo", {"text": "ok"})
            assert not error and text == "ok"
            doc = await health(gateway)
            assert doc["breakers"]["garbage"]["state"] == "open"
            assert doc["breakers"]["garbage"]["total_failures"] == 3
    finally:
        gateway.stop()


async def test_half_failing_reads_are_retried_and_never_trip_the_breaker(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {"faulty": faulty_server()},
        gateway={
            "breaker": {"fail_max": 2},
            "retry": {"initial_backoff": 0.01, "max_backoff": 0.05},
            "servers": {"faulty": {"cache": {"enabled": False}}},
        },
    )
    gateway = GatewayProcess(config)
    try:
        gateway.wait_backends_up()  # the HTTP backend is up first: /ready needs only one
        async with client(gateway) as c:
            for _ in range(6):
                error, text, _ = await call(c, "faulty_flaky")
                assert not error and text.startswith("ok #")
            error, text, _ = await call(c, "faulty_fail")  # a write failing: reported, never retried
            assert error and "502" in text
            counts = await stats(c)
            assert counts["flaky"] == 12 and counts["fail"] == 1
            doc = await health(gateway)
            assert doc["breakers"]["faulty"]["state"] == "closed"
            assert doc["retries"] == 6
    finally:
        gateway.stop()


async def test_bulkhead_bounds_in_flight_and_queued_calls(tmp_path: Path, healthy: dict[str, str]) -> None:
    config = write_config(
        tmp_path,
        {"slow": faulty_server(), "healthy": healthy},
        gateway={
            "servers": {
                "slow": {
                    "bulkhead": {"max_concurrent": 2, "max_queue": 2, "queue_timeout": 30},
                    "breaker": {"enabled": False},
                    "tools": {"hang": {"timeout": 2}},
                }
            }
        },
    )
    gateway = GatewayProcess(config)
    try:
        gateway.wait_backends_up()  # the HTTP backend is up first: /ready needs only one
        async with client(gateway) as c:
            results: list[str] = []

            async def one(tag: int) -> None:
                _, text, _ = await call(c, "slow_hang", {"tag": str(tag)})
                results.append(text)

            async with anyio.create_task_group() as group:
                for tag in range(10):
                    group.start_soon(one, tag)

                async def bounded() -> dict | None:
                    doc = (await health(gateway))["bulkheads"]["slow"]
                    return doc if doc["active"] == 2 and doc["queued"] == 2 and doc["rejected"] == 6 else None

                doc = await until(bounded)
                assert doc["max_queue"] == 2
                error, text, _ = await call(c, "healthy_echo", {"text": "unaffected"})
                assert not error and text == "unaffected"
            overloaded = [t for t in results if "overloaded" in t and "'slow'" in t]
            timed_out = [t for t in results if "timed out after 2 s" in t]
            assert len(overloaded) == 6 and len(timed_out) == 4
            doc = (await health(gateway))["bulkheads"]["slow"]
            assert doc["active"] == 0 and doc["queued"] == 0
    finally:
        gateway.stop()
