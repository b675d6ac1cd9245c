"""A stdio backend's calls share one loop timer (armed for the soonest deadline): a call with a short timeout
still times out on its own while a call with a long one is pending on the same backend, and the backend is
told of each."""

from __future__ import annotations

from pathlib import Path

import anyio

from tests.gateway.resilience.conftest import call, client, faulty_server, until
from tests.helpers.procs import GatewayProcess, write_config


async def test_a_short_timeout_fires_while_a_longer_one_is_pending(tmp_path: Path) -> None:
    cancel_file = tmp_path / "cancelled.txt"
    config = write_config(
        tmp_path,
        {"faulty": faulty_server(FAULTY_CANCEL_FILE=str(cancel_file))},
        gateway={
            "servers": {
                "faulty": {
                    "retry": {"attempts": 1},
                    "tools": {"hang": {"timeout": 600}, "slow_read": {"timeout": 0.5}},
                }
            }
        },
    )
    gateway = GatewayProcess(config)
    try:
        async with client(gateway) as c, anyio.create_task_group() as group:
            long_done = anyio.Event()

            async def long_call() -> None:
                await call(c, "faulty_hang", {"tag": "long"})
                long_done.set()

            group.start_soon(long_call)
            await anyio.sleep(0.2)  # the long call is sent first: the pipe's timer is armed for its deadline
            with anyio.fail_after(120):  # a guard against a hang, not a timing assertion
                error, text, _ = await call(c, "faulty_slow_read", {"key": "k", "seconds": 300})
            assert error and "timed out after 0.5 s" in text
            assert not long_done.is_set()  # the long call is still pending: the short one timed out on its own
            group.cancel_scope.cancel()  # the client gives up on the long call
        await until(lambda: cancel_file.exists() and "cancelled long" in cancel_file.read_text())
    finally:
        gateway.stop()
